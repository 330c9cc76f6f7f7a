"""Latency statistics: median and p90 from raw nanosecond samples, geometric means of ratios.

Kept free of numpy so the parent process (CLI, report) never needs it to format results.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(samples_ms: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation, as numpy's default."""
    if not samples_ms:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples_ms)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(samples_ns: Sequence[int]) -> tuple[float, float]:
    """(median ms, p90 ms) of per-run wall times in nanoseconds."""
    ms = [s / 1e6 for s in samples_ns]
    return percentile(ms, 50.0), percentile(ms, 90.0)


def geomean(values: Sequence[float]) -> float | None:
    """Geometric mean of positive values; ``None`` when there are none."""
    positive = [v for v in values if v > 0 and math.isfinite(v)]
    if not positive:
        return None
    return math.exp(sum(math.log(v) for v in positive) / len(positive))
