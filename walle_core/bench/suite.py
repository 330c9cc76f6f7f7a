"""Running several models in one go, as ``walle bench --all`` and ``benchmarks/run_all.py`` do.

Progress goes to a rich console on stderr so that ``--json`` output on stdout stays parseable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from walle_core.bench.harness import bench_model
from walle_core.bench.models import resolve
from walle_core.bench.results import BenchReport, RunnerResult


def parse_runners(vs: str, include_walle: bool = True) -> list[str]:
    """``"onnxruntime,mnn"`` -> ``["walle", "onnxruntime", "mnn"]`` (order kept, no duplicates)."""
    names = ["walle"] if include_walle else []
    for part in vs.split(","):
        name = {"ort": "onnxruntime", "pytorch": "torch"}.get(part.strip().lower(), part.strip())
        if name and name not in names:
            names.append(name.lower())
    return names


def run_suite(
    models: Sequence[str],
    runners: Sequence[str],
    *,
    threads: int,
    warmup: int,
    runs: int,
    backend: str,
    console: Any,
    timeout: float,
    floor: bool = True,
) -> list[BenchReport]:
    """Resolve (building where needed) and measure each model; progress on ``console``. With
    ``floor`` each runner's floor (``harness.measure_floor``) is measured once for the run."""
    reports = []
    floors: dict[str, float | None] | None = {} if floor else None
    for model in models:
        with console.status(f"building {model}"):
            label, path = resolve(model)

        def progress(result: RunnerResult, label: str = label) -> None:
            shown = f"{result.median_ms:.2f} ms" if result.median_ms else result.status.value
            console.log(f"{label}: {result.runner} {shown}")

        with console.status(f"measuring {label}"):
            report = bench_model(path, runners, label=label, threads=threads, warmup=warmup,
                                 runs=runs, backend=backend, timeout=timeout, on_result=progress,
                                 floors=floors)
        reports.append(report)
    return reports
