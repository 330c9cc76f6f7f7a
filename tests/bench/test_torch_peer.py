"""The torch peer runs the nn.Module a model-set model was exported from (needs torch)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from walle_core.bench.harness import bench_model
from walle_core.bench.models import load_modelset
from walle_core.bench.results import Status

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="torch==2.13.0 (CPU) not installed"
)


def test_torch_peer_matches_onnxruntime_on_din(tmp_path: Path) -> None:
    path = Path(load_modelset().build("din", cache_dir=tmp_path))
    assert (path.parent / "test_data_set_0" / "input_5.pb").exists()
    report = bench_model(path, ["onnxruntime", "torch"], warmup=1, runs=3)
    result = report.get("torch")
    assert result is not None and result.status is Status.OK, result.message
    assert result.max_diff is not None and result.max_diff < 1e-4


@pytest.mark.slow
def test_model_set_builds_are_byte_identical(tmp_path: Path) -> None:
    modelset = load_modelset()
    for name in ("din", "mobilenetv2"):
        first = Path(modelset.build(name, cache_dir=tmp_path / "a"))
        second = Path(modelset.build(name, cache_dir=tmp_path / "b"))
        assert first.read_bytes() == second.read_bytes(), name
