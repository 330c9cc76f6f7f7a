"""Runs every runner on one model, one after another (never concurrently: the machine has two
cores), each in a fresh subprocess, then relates them: the latency ratio walle/peer comes from
this same invocation, and every output is compared with one reference output.

The reference is Walle's output when Walle ran, else onnxruntime's, else the first runner that
produced outputs; ``BenchReport.reference`` names it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from walle_core.bench.models import floor_model
from walle_core.bench.results import BenchReport, RunnerResult, Status
from walle_core.bench.runners import thread_env

DEFAULT_TIMEOUT_S = 900.0


def default_cache_dir() -> Path:
    from walle_core.hostinfo import cache_root

    return cache_root()


def run_worker(spec: dict[str, Any], timeout: float) -> tuple[RunnerResult, dict[str, Any]]:
    """One runner in its own process; a crash or timeout becomes a FAILED result."""
    import numpy as np

    out_dir = Path(spec["out_dir"])
    spec_file = out_dir / "spec.json"
    spec_file.write_text(json.dumps(spec))
    cmd = [sys.executable, "-m", "walle_core.bench.worker", str(spec_file)]
    try:
        proc = subprocess.run(cmd, env=thread_env(spec["threads"]), capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return RunnerResult(spec["runner"], Status.FAILED, f"timed out after {timeout:.0f}s"), {}
    result_file = out_dir / "result.json"
    if not result_file.exists():
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        msg = f"worker exited with {proc.returncode}: {tail}"[:500]
        return RunnerResult(spec["runner"], Status.FAILED, msg), {}
    result = RunnerResult.from_json(json.loads(result_file.read_text()))
    outputs: dict[str, Any] = {}
    if (out_dir / "outputs.npz").exists():
        names = json.loads((out_dir / "output_names.json").read_text())
        with np.load(out_dir / "outputs.npz") as data:
            outputs = {n: data[f"arr_{i}"] for i, n in enumerate(names)}
    return result, outputs


def max_abs_diff(ours: dict[str, Any], ref: dict[str, Any]) -> float:
    """Largest |ours - ref| over all outputs, matched by name, else by position.

    Shapes that differ only by size-1 axes (MNN keeps some as 4-D) are compared flattened;
    anything else that cannot be compared is ``inf``.
    """
    import numpy as np

    if set(ours) == set(ref):
        pairs = [(ours[n], ref[n]) for n in ref]
    elif len(ours) == len(ref):
        pairs = list(zip(ours.values(), ref.values(), strict=True))
    else:
        return float("inf")
    worst = 0.0
    for a, b in pairs:
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            if a.size != b.size:
                return float("inf")
            a = a.reshape(b.shape)
        if a.size:
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            worst = max(worst, float(np.nan_to_num(diff, nan=np.inf).max()))
    return worst


def _pick_reference(outputs: dict[str, dict[str, Any]]) -> str | None:
    for name in ("walle", "onnxruntime", *outputs):
        if outputs.get(name):
            return name
    return None


def bench_model(
    model_path: Path,
    runners: Sequence[str],
    *,
    label: str | None = None,
    threads: int = 2,
    warmup: int = 3,
    runs: int = 20,
    backend: str = "auto",
    cache_dir: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    on_result: Callable[[RunnerResult], None] | None = None,
    floors: dict[str, float | None] | None = None,
) -> BenchReport:
    """Measure ``runners`` on one model and relate them (ratio to walle, diff to reference).

    With ``floors`` (a dict shared by the models of one bench run) each runner that measured
    also gets its ``floor_mb``: its peak on the floor model, measured once per run in its own
    worker and kept in ``floors``.
    """
    report = BenchReport(model=label or model_path.stem, path=str(model_path), threads=threads,
                         warmup=warmup, runs=runs)
    outputs: dict[str, dict[str, Any]] = {}
    cache = cache_dir or default_cache_dir()
    with tempfile.TemporaryDirectory(prefix="walle-bench-") as tmp:
        for name in runners:
            out_dir = Path(tmp) / name
            out_dir.mkdir()
            spec = {"runner": name, "model": str(model_path), "threads": threads,
                    "warmup": warmup, "runs": runs, "backend": backend,
                    "cache_dir": str(cache), "out_dir": str(out_dir)}
            result, outputs[name] = run_worker(spec, timeout)
            if floors is not None and result.status is Status.OK:
                if name not in floors:
                    floors[name] = measure_floor(name, backend=backend, threads=threads,
                                                 cache_dir=cache, timeout=timeout)
                result.floor_mb = floors[name]
            report.results.append(result)
            if on_result is not None:
                on_result(result)
    relate(report, outputs)
    return report


def measure_floor(runner: str, *, backend: str = "auto", threads: int = 2,
                  cache_dir: Path | None = None, timeout: float = DEFAULT_TIMEOUT_S
                  ) -> float | None:
    """``runner``'s peak MB on the floor model (``models.floor_model``) in a fresh worker, the
    same measurement as a model's peak; None when it cannot run it (no torch source)."""
    cache = cache_dir or default_cache_dir()
    with tempfile.TemporaryDirectory(prefix="walle-floor-") as tmp:
        spec = {"runner": runner, "model": str(floor_model(cache)), "threads": threads,
                "warmup": 1, "runs": 3, "backend": backend, "cache_dir": str(cache),
                "out_dir": tmp}
        result, _ = run_worker(spec, timeout)
    return result.peak_mb if result.status is Status.OK else None


def relate(report: BenchReport, outputs: dict[str, dict[str, Any]]) -> None:
    """Fill ``ratio`` (walle median / runner median) and ``max_diff`` (vs the reference)."""
    report.reference = _pick_reference(outputs)
    walle = report.get("walle")
    for result in report.results:
        if result.status is not Status.OK:
            continue
        if report.reference and outputs.get(result.runner):
            result.max_diff = max_abs_diff(outputs[result.runner], outputs[report.reference])
        if walle and walle.status is Status.OK and walle.median_ms and result.median_ms:
            result.ratio = walle.median_ms / result.median_ms
