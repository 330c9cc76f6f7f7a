"""Models exported from PyTorch match onnxruntime to 1e-4 (skipped without torch).

The models are the benchmark set's own builders (``benchmarks/modelset``), so what is checked for
correctness here is exactly what ``walle bench`` times.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from benchmarks import modelset  # noqa: E402
from walle_core import Session  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    cache = tmp_path_factory.mktemp("torch_models")
    return {name: modelset.build(name, cache_dir=cache)
            for name in ("mobilenetv2", "resnet18", "bert_encoder")}


def max_diff_against_onnxruntime(path: Path, feeds: dict[str, np.ndarray]) -> float:
    ours = Session(path).run(feeds)
    theirs = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert list(ours) and len(ours) == len(theirs)
    return max(float(np.max(np.abs(a - b))) for a, b in zip(ours.values(), theirs, strict=True))


def image(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"input": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)}


def tokens(batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, seq), dtype=np.int64)
    mask[:, seq - seq // 4:] = 0
    return {"input_ids": rng.integers(0, 30522, (batch, seq), dtype=np.int64),
            "attention_mask": mask}


@pytest.mark.parametrize("name", ["mobilenetv2", "resnet18"])
def test_cnn_matches_onnxruntime(models: dict[str, Path], name: str) -> None:
    assert max_diff_against_onnxruntime(models[name], image(1)) < 1e-4


@pytest.mark.parametrize(("batch", "seq"), [(1, 16), (3, 40), (2, 7)])
def test_bert_encoder_dynamic_axes(models: dict[str, Path], batch: int, seq: int) -> None:
    assert max_diff_against_onnxruntime(models["bert_encoder"], tokens(batch, seq)) < 1e-4


def test_bert_encoder_replans_per_shape(models: dict[str, Path]) -> None:
    session = Session(models["bert_encoder"])
    assert session.inputs[0].shape == ("batch", "sequence")
    for batch, seq in [(1, 8), (2, 12), (1, 8)]:
        out = session.run(tokens(batch, seq))["last_hidden_state"]
        assert out.shape[:2] == (batch, seq) and np.isfinite(out).all()
    assert len(session._plans) == 2
