"""Models exported from PyTorch match onnxruntime to 1e-4 (skipped without torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from benchmarks.models.export import compare, export_all, sample_feeds  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return export_all(tmp_path_factory.mktemp("torch_models"))


@pytest.mark.parametrize("name", ["mobilenet_v2", "resnet18"])
def test_cnn_matches_onnxruntime(models: dict[str, Path], name: str) -> None:
    diff, _, _ = compare(models[name], sample_feeds(name))
    assert diff < 1e-4


@pytest.mark.parametrize("batch,seq", [(1, 16), (3, 40), (2, 7)])
def test_bert_encoder_dynamic_axes(models: dict[str, Path], batch: int, seq: int) -> None:
    diff, _, _ = compare(models["bert_encoder"], sample_feeds("bert_encoder", batch, seq))
    assert diff < 1e-4


def test_bert_encoder_replans_per_shape(models: dict[str, Path]) -> None:
    from walle_core import Session

    session = Session(models["bert_encoder"])
    assert session.inputs[0].shape == ("batch", "seq")
    for batch, seq in [(1, 8), (2, 12), (1, 8)]:
        out = session.run(sample_feeds("bert_encoder", batch, seq))["hidden"]
        assert out.shape == (batch, seq, 128) and np.isfinite(out).all()
    assert len(session._plans) == 2
