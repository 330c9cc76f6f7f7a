"""The benchmark model set: what ``walle bench --all`` and ``benchmarks/run_all.py`` measure.

Names map to builders. Light models are the 9 ``light_*.onnx`` files shipped inside the onnx
package (used as they are); the others are plain torch.nn modules (``cnn``, ``transformer``,
``din``) exported by ``export.build`` into ``$WALLE_CACHE_DIR/models/<name>/`` (default
``~/.cache/walle/models``) with their test inputs and a sidecar that lets the torch peer rebuild
the very same module. Everything is seeded, so a rebuild gives the same bytes of weights.

torch is imported only when a torch model is built, never at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from walle_core.bench.models import LIGHT_MODELS, light_model_path

SEED = 0


@dataclass(frozen=True)
class TorchModel:
    """A model written in torch: how to build it and what to feed it."""

    module: str  # submodule of this package
    factory: str  # function in it returning the nn.Module
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dynamic: dict[str, dict[int, str]]


_IMAGE = {"input": {0: "batch"}, "logits": {0: "batch"}}

TORCH_MODELS: dict[str, TorchModel] = {
    "mobilenetv2": TorchModel("cnn", "mobilenetv2", ("input",), ("logits",), _IMAGE),
    "resnet18": TorchModel("cnn", "resnet18", ("input",), ("logits",), _IMAGE),
    "resnet50": TorchModel("cnn", "resnet50", ("input",), ("logits",), _IMAGE),
    "bert_encoder": TorchModel(
        "transformer", "bert_encoder", ("input_ids", "attention_mask"), ("last_hidden_state",),
        {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
         "last_hidden_state": {0: "batch", 1: "sequence"}},
    ),
    "din": TorchModel(
        "din", "din",
        ("user_id", "item_id", "cate_id", "hist_item_ids", "hist_cate_ids", "hist_mask"),
        ("ctr",),
        {"user_id": {0: "batch"}, "item_id": {0: "batch"}, "cate_id": {0: "batch"},
         "hist_item_ids": {0: "batch", 1: "history"}, "hist_cate_ids": {0: "batch", 1: "history"},
         "hist_mask": {0: "batch", 1: "history"}, "ctr": {0: "batch"}},
    ),
}


def names() -> list[str]:
    """All model-set names in benchmark order: torch-built first, then ``light:*``."""
    return [*TORCH_MODELS, *(f"light:{n}" for n in LIGHT_MODELS)]


def build(name: str, cache_dir: Path | None = None, force: bool = False) -> Path:
    """Path of the model's .onnx, exporting it first if it is not cached yet."""
    if name.startswith("light:"):
        return light_model_path(name.split(":", 1)[1])
    from . import export

    return export.build(name, TORCH_MODELS[name], cache_dir=cache_dir, seed=SEED, force=force)


def torch_module(name: str, seed: int = SEED) -> Any:
    """The eval-mode nn.Module that ``build(name)`` exported, rebuilt from the same seed."""
    from . import export

    return export.make_module(TORCH_MODELS[name], seed)
