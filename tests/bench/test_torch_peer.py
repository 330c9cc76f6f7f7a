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


def test_din_builds_reproducibly_and_torch_matches_onnxruntime(tmp_path: Path) -> None:
    modelset = load_modelset()
    path = Path(modelset.build("din", cache_dir=tmp_path / "a"))
    again = Path(modelset.build("din", cache_dir=tmp_path / "b"))
    assert path.read_bytes() == again.read_bytes()
    assert (path.parent / "test_data_set_0" / "input_5.pb").exists()
    report = bench_model(path, ["onnxruntime", "torch"], warmup=1, runs=3)
    result = report.get("torch")
    assert result is not None and result.status is Status.OK, result.message
    assert result.max_diff is not None and result.max_diff < 1e-4
