"""Benchmark harness: time Walle against its peers on the same model, machine and thread count.

Why a package of its own: the figures the CPU-backend issue is judged by (median/p90 latency,
peak memory, ratio to onnxruntime, MNN and PyTorch) must be taken the same way every time, from
the CLI, from ``benchmarks/run_all.py`` and from tests. Nothing heavy is imported here: numpy,
onnxruntime, MNN and torch are imported inside the runner that needs them, in a subprocess.
"""

from __future__ import annotations

from walle_core.bench.results import BenchReport, RunnerResult, Status
from walle_core.bench.stats import geomean, summarize

__all__ = ["BenchReport", "RunnerResult", "Status", "geomean", "summarize"]
