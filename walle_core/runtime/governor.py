"""Fewer BLAS threads while the CPU is contended.

A multi-threaded GEMM ends in a barrier. When other processes keep every core busy, a BLAS
worker that loses its core holds the whole call for a scheduler time slice: measured on the
2-core VM with two busy processes beside it, ResNet-18 took 723 ms with 2 BLAS threads and
229 ms with 1, and a Winograd Conv (36 small GEMMs, each waiting for its slice) 565 ms instead
of 1 ms. onnxruntime degraded ~3.5x under the same load; this engine, ~30x.

So :class:`ThreadGovernor` watches the machine between runs, at most every ``interval``
seconds, and limits the BLAS pool to one thread while the CPU is contended, restoring the
session's thread budget when it is not. Contention is read from Linux pressure stall
information (``/proc/pressure/cpu``, "some avg10": the share of the last 10 s in which a
runnable task waited for a CPU), or else from the load average per core, with hysteresis so it
does not flap. A quiet machine is never affected. ``WALLE_ADAPTIVE_THREADS=0`` turns it off.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

#: PSI "some avg10" (percent) above which the CPU counts as contended, and below which it no
#: longer does; load average per core likewise, where PSI is not available.
PSI_BUSY, PSI_CALM = 25.0, 10.0
LOAD_BUSY, LOAD_CALM = 1.25, 0.9


def cores() -> int:
    """Cores this process may run on (affinity aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def psi_some_avg10(path: Path = Path("/proc/pressure/cpu")) -> float | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("some "):
                for field in line.split()[1:]:
                    key, _, value = field.partition("=")
                    if key == "avg10":
                        return float(value)
    except (OSError, ValueError):
        return None
    return None


def load_per_core() -> float | None:
    try:
        return os.getloadavg()[0] / max(os.cpu_count() or 1, 1)
    except (AttributeError, OSError):
        return None


def contended(previous: bool, psi: Callable[[], float | None] = psi_some_avg10,
              load: Callable[[], float | None] = load_per_core) -> bool:
    """Whether the CPU is contended now; between the two thresholds the answer stays
    ``previous``."""
    value, busy, calm = psi(), PSI_BUSY, PSI_CALM
    if value is None:
        value, busy, calm = load(), LOAD_BUSY, LOAD_CALM
        if value is None:
            return False
    if value > busy:
        return True
    if value < calm:
        return False
    return previous


def _set_blas_threads(n: int) -> None:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a declared dependency
        return
    threadpool_limits(limits=n, user_api="blas")


class ThreadGovernor:
    """Limits BLAS to one thread while the CPU is contended (see the module docstring)."""

    def __init__(self, threads: int, interval: float = 0.5,
                 probe: Callable[[bool], bool] = contended,
                 apply: Callable[[int], None] = _set_blas_threads) -> None:
        self.threads = max(1, threads)
        self.interval = interval
        self.enabled = self.threads > 1 and \
            os.environ.get("WALLE_ADAPTIVE_THREADS", "1") not in ("0", "false", "no")
        self._probe = probe
        self._apply = apply
        self._last = -float("inf")
        self.busy = False
        self.switches = 0

    def tick(self) -> None:
        """Called before a run: re-check at most every ``interval`` seconds."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        busy = self._probe(self.busy)
        if busy != self.busy:
            self.busy = busy
            self.switches += 1
            self._apply(1 if busy else self.threads)
