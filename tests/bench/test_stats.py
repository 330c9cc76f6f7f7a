"""Latency statistics and ratio bookkeeping, without running anything."""

from __future__ import annotations

import math

import pytest

from walle_core.bench.harness import max_abs_diff, relate
from walle_core.bench.results import BenchReport, RunnerResult, Status
from walle_core.bench.stats import geomean, percentile, summarize
from walle_core.bench.suite import parse_runners


def test_median_and_p90_match_numpy() -> None:
    np = pytest.importorskip("numpy")
    samples = [5_000_000, 1_000_000, 3_000_000, 2_000_000, 10_000_000, 4_000_000]
    median, p90 = summarize(samples)
    ms = np.array(samples) / 1e6
    assert median == pytest.approx(float(np.percentile(ms, 50)))
    assert p90 == pytest.approx(float(np.percentile(ms, 90)))
    assert median <= p90


def test_percentile_single_sample_and_empty() -> None:
    assert percentile([2.5], 90) == 2.5
    with pytest.raises(ValueError):
        percentile([], 50)


def test_geomean() -> None:
    assert geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert geomean([]) is None
    assert geomean([0.0, math.inf]) is None


def test_ratio_is_walle_over_peer_from_the_same_report() -> None:
    report = BenchReport("m", "m.onnx", threads=2, warmup=1, runs=3, results=[
        RunnerResult("walle", Status.OK, median_ms=30.0),
        RunnerResult("onnxruntime", Status.OK, median_ms=10.0),
        RunnerResult("mnn", Status.NOT_INSTALLED, "MNN not installed"),
    ])
    outputs = {"walle": {"y": [1.0, 2.0]}, "onnxruntime": {"y": [1.0, 2.5]}, "mnn": {}}
    relate(report, outputs)
    assert report.reference == "walle"
    ort = report.get("onnxruntime")
    assert ort is not None and ort.ratio == pytest.approx(3.0)
    assert ort.max_diff == pytest.approx(0.5)
    mnn = report.get("mnn")
    assert mnn is not None and mnn.ratio is None and mnn.max_diff is None


def test_reference_falls_back_to_onnxruntime_when_walle_failed() -> None:
    report = BenchReport("m", "m.onnx", threads=2, warmup=1, runs=3, results=[
        RunnerResult("walle", Status.FAILED, "boom"),
        RunnerResult("onnxruntime", Status.OK, median_ms=10.0),
    ])
    relate(report, {"walle": {}, "onnxruntime": {"y": [1.0]}})
    assert report.reference == "onnxruntime"
    ort = report.get("onnxruntime")
    assert ort is not None and ort.ratio is None and ort.max_diff == 0.0


def test_max_abs_diff_matches_by_position_and_flattens_unit_axes() -> None:
    np = pytest.importorskip("numpy")
    ours = {"a": np.ones((1, 4, 1, 1))}
    ref = {"b": np.zeros((1, 4))}
    assert max_abs_diff(ours, ref) == 1.0
    assert max_abs_diff({"a": np.ones(3)}, {"a": np.ones(4)}) == math.inf


def test_parse_runners_aliases_and_order() -> None:
    assert parse_runners("ort, mnn,pytorch,mnn") == ["walle", "onnxruntime", "mnn", "torch"]
    assert parse_runners("") == ["walle"]


def test_json_round_trip_and_markdown() -> None:
    from walle_core.bench.report import markdown, to_json
    from walle_core.bench.results import report_from_json

    report = BenchReport("m", "m.onnx", threads=2, warmup=1, runs=3, reference="walle", results=[
        RunnerResult("walle", Status.OK, median_ms=30.0, p90_ms=31.0, peak_mb=10.0),
        RunnerResult("onnxruntime", Status.OK, median_ms=10.0, p90_ms=12.0, peak_mb=5.0,
                     ratio=3.0, max_diff=1e-6),
        RunnerResult("torch", Status.NO_SOURCE, "no torch source"),
    ])
    data = to_json([report])
    again = report_from_json(data["models"][0])
    assert again == report
    text = markdown([again])
    assert "| m | 30.00 (10) | 10.00 (5) | no torch source | 1.0e-06 vs walle |" in text
    walle_row = next(r for r in data["summary"] if r["runner"] == "walle")
    assert walle_row["latency_vs_ort"] == pytest.approx(3.0)
    assert walle_row["memory_vs_ort"] == pytest.approx(2.0)


def test_model_memory_is_peak_above_floor_in_summary_and_markdown() -> None:
    from walle_core.bench.report import markdown, summary_rows

    report = BenchReport("m", "m.onnx", threads=2, warmup=1, runs=3, reference="walle", results=[
        RunnerResult("walle", Status.OK, median_ms=2.0, peak_mb=60.0, floor_mb=50.0),
        RunnerResult("onnxruntime", Status.OK, median_ms=1.0, peak_mb=25.0, floor_mb=5.0,
                     ratio=2.0),
    ])
    walle = report.results[0]
    assert walle.model_mb == pytest.approx(10.0)
    assert RunnerResult("x", Status.OK, peak_mb=3.0, floor_mb=4.0).model_mb == 0.0
    assert RunnerResult("x", Status.OK, peak_mb=3.0).model_mb is None
    row = next(r for r in summary_rows([report]) if r["runner"] == "walle")
    assert row["memory_vs_ort"] == pytest.approx(60.0 / 25.0)
    assert row["model_memory_vs_ort"] == pytest.approx(10.0 / 20.0)
    text = markdown([report])
    assert "| m | 2.00 (60 / 10) | 1.00 (25 / 20) |" in text
    assert "floor MB (peak on the one-Conv floor model): walle 50.0, onnxruntime 5.0" in text
    # results saved before floors existed still load
    from walle_core.bench.results import RunnerResult as R

    old = walle.to_json()
    del old["floor_mb"]
    assert R.from_json(old).floor_mb is None
