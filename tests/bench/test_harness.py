"""The harness measuring real runners in subprocesses on a tiny hand-built model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from walle_core.bench.feeds import random_feeds
from walle_core.bench.harness import bench_model
from walle_core.bench.models import UnknownModel, light_model_path, resolve
from walle_core.bench.results import Status


def test_onnxruntime_numbers_are_sane(tiny_model: Path) -> None:
    report = bench_model(tiny_model, ["walle", "onnxruntime"], warmup=1, runs=5, threads=1)
    ort = report.get("onnxruntime")
    assert ort is not None and ort.status is Status.OK, ort
    assert ort.runs == 5
    assert ort.median_ms is not None and ort.p90_ms is not None
    assert 0 < ort.median_ms <= ort.p90_ms
    assert ort.peak_mb is not None and ort.peak_mb >= 0
    assert ort.version
    walle = report.get("walle")
    assert walle is not None
    if walle.status is Status.OK:  # the engine runs: the ratio comes from this same run
        assert walle.median_ms is not None
        assert ort.ratio == pytest.approx(walle.median_ms / ort.median_ms)
        assert report.reference == "walle"
        assert ort.max_diff is not None and ort.max_diff < 1e-4
    else:  # the engine failing is a row of the report, never a crash
        assert walle.message
        assert ort.ratio is None
        assert report.reference == "onnxruntime"


def test_missing_peer_is_reported_not_installed(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shadow = tmp_path / "shadow" / "MNN"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    monkeypatch.setenv("PYTHONPATH", str(shadow.parent))
    report = bench_model(tiny_model, ["onnxruntime", "mnn"], warmup=0, runs=1)
    mnn = report.get("mnn")
    assert mnn is not None and mnn.status is Status.NOT_INSTALLED
    assert "not installed" in mnn.message
    ort = report.get("onnxruntime")
    assert ort is not None and ort.status is Status.OK


def test_onnx_only_model_has_no_torch_source(tiny_model: Path) -> None:
    report = bench_model(tiny_model, ["torch"], warmup=0, runs=1)
    torch_result = report.get("torch")
    assert torch_result is not None
    assert torch_result.status in (Status.NO_SOURCE, Status.NOT_INSTALLED)


def test_unknown_runner_fails_softly(tiny_model: Path) -> None:
    report = bench_model(tiny_model, ["tvm", "onnxruntime"], warmup=0, runs=1)
    tvm = report.get("tvm")
    assert tvm is not None and tvm.status is Status.FAILED and "unknown runner" in tvm.message


@pytest.mark.skipif(importlib.util.find_spec("MNN") is None, reason="MNN wheel not installed")
def test_mnn_conversion_and_run_match_onnxruntime(tiny_model: Path, private_cache: Path) -> None:
    report = bench_model(tiny_model, ["onnxruntime", "mnn"], warmup=1, runs=3,
                         cache_dir=private_cache)
    mnn = report.get("mnn")
    assert mnn is not None and mnn.status is Status.OK, mnn.message
    assert report.reference == "onnxruntime"
    assert mnn.max_diff is not None and mnn.max_diff < 1e-4
    assert list((private_cache / "mnn").glob("tiny-*.mnn"))


def test_random_feeds_fill_symbolic_dims(tiny_model: Path) -> None:
    feeds = random_feeds(tiny_model, seed=0)
    assert feeds["x"].shape == (1, 16)
    again = random_feeds(tiny_model, seed=0)
    assert (feeds["x"] == again["x"]).all()


def test_model_names_resolve() -> None:
    label, path = resolve("light:squeezenet")
    assert label == "light:squeezenet" and path == light_model_path("squeezenet")
    assert path.exists()
    with pytest.raises(UnknownModel):
        resolve("no_such_model")


def test_walle_runner_imports_its_backends_in_check_like_every_peer() -> None:
    """The worker's memory baseline is taken after check(): Walle's backend plugins must be
    imported there, as onnxruntime's library is in its check(), or Walle alone pays for its
    library code in the peak-memory figure. Run in a fresh interpreter to see the import."""
    import subprocess
    import sys

    pytest.importorskip("walle_backend_numba")
    # the kernel modules and the core modules a session imports on first use come too
    lazy = ("walle_backend_numba.conv", "walle_backend_numba.nhwc",
            "walle_core.reference_ops", "walle_core.runtime.layout")
    code = ("import sys; from walle_core.bench.runners import WalleRunner; "
            f"names = {lazy!r}; "
            "before = [n in sys.modules for n in ('walle_backend_numba',) + names]; "
            "WalleRunner('numba').check(); "
            "after = [n in sys.modules for n in ('walle_backend_numba',) + names]; "
            "print(any(before), all(after))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "True"]


def test_floor_is_measured_once_per_run_and_subtracted(tiny_model: Path,
                                                      private_cache: Path) -> None:
    """Each runner's floor comes from its own worker on the one-Conv floor model, once for all
    models of a run; a model's ``model_mb`` is its peak above that floor."""
    from walle_core.bench.harness import measure_floor
    from walle_core.bench.models import floor_model

    path = floor_model(private_cache)
    assert path.exists() and floor_model(private_cache) == path  # built once, then reused
    import onnx

    onnx.checker.check_model(onnx.load(str(path)))
    floors: dict[str, float | None] = {}
    first = bench_model(tiny_model, ["onnxruntime", "torch"], warmup=0, runs=2,
                        cache_dir=private_cache, floors=floors)
    ort = first.get("onnxruntime")
    assert ort is not None and ort.status is Status.OK
    assert set(floors) == {"onnxruntime"}  # torch had no source: not measured, no floor
    assert ort.floor_mb == floors["onnxruntime"] and ort.floor_mb is not None
    assert ort.model_mb == pytest.approx(max(ort.peak_mb - ort.floor_mb, 0.0))
    floors["onnxruntime"] = 123.0  # a second model of the same run reuses the stored floor
    second = bench_model(tiny_model, ["onnxruntime"], warmup=0, runs=2,
                         cache_dir=private_cache, floors=floors)
    again = second.get("onnxruntime")
    assert again is not None and again.floor_mb == 123.0
    # a runner that cannot run the floor model has no floor
    assert measure_floor("torch", cache_dir=private_cache) is None
