"""Exporting a torch model of the set to ONNX, reproducibly.

Layout written (ONNX model-zoo style, so ``walle bench`` finds the inputs by itself):
``<cache>/models/<name>/model.onnx``, ``test_data_set_0/input_<i>.pb`` (seeded inputs at batch
1), ``walle_bench.json`` (name, seed, input/output order, builder version: the torch peer's
recipe). The TorchScript exporter (``dynamo=False``) is used with opset 17: the dynamo exporter
needs onnxscript, which the benchmark environment does not carry.
"""

from __future__ import annotations

import importlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

BUILD_VERSION = 1  # bump when a builder changes so cached exports are rebuilt
OPSET = 17


def cache_root(cache_dir: Path | None) -> Path:
    if cache_dir is not None:
        return cache_dir
    root = os.environ.get("WALLE_CACHE_DIR") or os.path.join("~", ".cache", "walle")
    return Path(root).expanduser() / "models"


def make_module(spec: Any, seed: int) -> Any:
    """Build the module with seeded weights, BatchNorm statistics included, in eval mode."""
    import torch

    torch.manual_seed(seed)
    factory = getattr(importlib.import_module(f"{__package__}.{spec.module}"), spec.factory)
    module = factory()
    for sub in module.modules():
        if isinstance(sub, torch.nn.BatchNorm2d):
            with torch.no_grad():
                sub.running_mean.normal_(0.0, 0.1)
                sub.running_var.uniform_(0.5, 1.5)
                sub.weight.uniform_(0.5, 1.5)
                sub.bias.normal_(0.0, 0.1)
    return module.eval()


def example_inputs(name: str, seed: int) -> list[Any]:
    """Seeded batch-1 inputs: images N(0,1); BERT 128 tokens (last 16 padded); DIN 50 events."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if name == "bert_encoder":
        ids = rng.integers(0, 30522, (1, 128), dtype=np.int64)
        mask = np.ones((1, 128), dtype=np.int64)
        mask[:, 112:] = 0
        return [ids, mask]
    if name == "din":
        from .din import CATES, HIST, ITEMS, USERS

        mask = np.zeros((1, HIST), dtype=np.float32)
        mask[:, :30] = 1.0
        return [rng.integers(0, USERS, (1,), dtype=np.int64),
                rng.integers(0, ITEMS, (1,), dtype=np.int64),
                rng.integers(0, CATES, (1,), dtype=np.int64),
                rng.integers(0, ITEMS, (1, HIST), dtype=np.int64),
                rng.integers(0, CATES, (1, HIST), dtype=np.int64), mask]
    return [rng.standard_normal((1, 3, 224, 224)).astype(np.float32)]


def build(name: str, spec: Any, cache_dir: Path | None, seed: int, force: bool = False) -> Path:
    import onnx
    import torch
    from onnx import numpy_helper

    out = cache_root(cache_dir) / name
    model_path, sidecar = out / "model.onnx", out / "walle_bench.json"
    meta = {"name": name, "seed": seed, "version": BUILD_VERSION, "opset": OPSET,
            "inputs": list(spec.inputs), "outputs": list(spec.outputs)}
    if not force and model_path.exists() and sidecar.exists():
        if json.loads(sidecar.read_text()) == meta:
            return model_path
    data_dir = out / "test_data_set_0"
    data_dir.mkdir(parents=True, exist_ok=True)
    module = make_module(spec, seed)
    inputs = example_inputs(name, seed)
    args = tuple(torch.from_numpy(a) for a in inputs)
    tmp = out / "model.onnx.partial"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(module, args, str(tmp), input_names=list(spec.inputs),
                          output_names=list(spec.outputs), dynamic_axes=spec.dynamic,
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    onnx.checker.check_model(onnx.load(str(tmp)))
    for i, (input_name, arr) in enumerate(zip(spec.inputs, inputs, strict=True)):
        tensor = numpy_helper.from_array(arr, input_name)
        (data_dir / f"input_{i}.pb").write_bytes(tensor.SerializeToString())
    with torch.no_grad():
        expected = module(*args)
    tensor = numpy_helper.from_array(expected.numpy(), spec.outputs[0])
    (data_dir / "output_0.pb").write_bytes(tensor.SerializeToString())
    tmp.replace(model_path)
    sidecar.write_text(json.dumps(meta, indent=1))
    return model_path
