"""Export the benchmark models to ONNX and compare Walle with onnxruntime on them.

``python -m benchmarks.models.export OUT_DIR`` writes mobilenet_v2.onnx, resnet18.onnx and
bert_encoder.onnx (dynamic batch/sequence axes) and prints the max difference Walle vs
onnxruntime for each, plus Walle's session-creation and run times.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

SEED = 0


def export_all(out_dir: Path, image: int = 224) -> dict[str, Path]:
    import torch

    from benchmarks.models.bert_encoder import BertEncoder
    from benchmarks.models.mobilenet_v2 import MobileNetV2
    from benchmarks.models.resnet18 import ResNet18

    torch.manual_seed(SEED)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, model in [("mobilenet_v2", MobileNetV2()), ("resnet18", ResNet18())]:
        _randomize_bn(model)
        model.eval()
        path = out_dir / f"{name}.onnx"
        torch.onnx.export(model, (torch.randn(1, 3, image, image),), str(path),
                          input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)
        paths[name] = path
    bert = BertEncoder().eval()
    path = out_dir / "bert_encoder.onnx"
    ids = torch.randint(0, 1000, (2, 16))
    torch.onnx.export(bert, (ids, torch.ones_like(ids)), str(path),
                      input_names=["input_ids", "attention_mask"], output_names=["hidden"],
                      dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                                    "attention_mask": {0: "batch", 1: "seq"},
                                    "hidden": {0: "batch", 1: "seq"}},
                      opset_version=17, dynamo=False)
    paths["bert_encoder"] = path
    return paths


def _randomize_bn(model: object) -> None:
    """Non-trivial BatchNorm statistics, so folding them is actually tested."""
    import torch

    for m in model.modules():  # type: ignore[attr-defined]
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


def sample_feeds(name: str, batch: int = 1, seq: int = 16, image: int = 224
                 ) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    if name == "bert_encoder":
        mask = np.ones((batch, seq), np.int64)
        mask[:, seq - 3:] = 0
        return {"input_ids": rng.integers(0, 1000, (batch, seq)).astype(np.int64),
                "attention_mask": mask}
    return {"image": rng.standard_normal((batch, 3, image, image)).astype(np.float32)}


def compare(path: Path, feeds: dict[str, np.ndarray]) -> tuple[float, float, float]:
    """(max |walle - onnxruntime|, session creation s, run s)."""
    import onnxruntime as ort

    from walle_core import Session

    start = time.perf_counter()
    session = Session(path)
    created = time.perf_counter() - start
    start = time.perf_counter()
    got = session.run(feeds)
    ran = time.perf_counter() - start
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    diff = max(float(np.max(np.abs(got[o.name] - w))) for o, w in zip(session.outputs, want,
                                                                      strict=True))
    return diff, created, ran


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "build/models")
    for name, path in export_all(out).items():
        cases = [{}] if name != "bert_encoder" else [dict(batch=1, seq=16), dict(batch=3, seq=40)]
        for case in cases:
            diff, created, ran = compare(path, sample_feeds(name, **case))
            print(f"{name} {case or ''}: max|walle-ort| = {diff:.2e}  "
                  f"session {created * 1e3:.0f} ms  run {ran * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
