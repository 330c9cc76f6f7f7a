"""Fewer BLAS threads while the CPU is contended.

A multi-threaded GEMM ends in a barrier. When other processes keep every core busy, a BLAS
worker that loses its core holds the whole call for a scheduler time slice: measured on the
2-core VM with two busy processes beside it, ResNet-18 took 723 ms with 2 BLAS threads and
229 ms with 1, and a Winograd Conv (36 small GEMMs, each waiting for its slice) 565 ms instead
of 1 ms. onnxruntime degraded ~3.5x under the same load; this engine, ~30x.

So :class:`ThreadGovernor` watches the machine between runs, at most every ``interval``
seconds, and limits the BLAS pool to one thread while the CPU is contended, restoring the
session's thread budget when it is not. Contention is read from Linux pressure stall
information (``/proc/pressure/cpu``: the share of time in which some runnable task waited for
a CPU, over the span since the previous check, :class:`RecentPressure`), or else from the load
average per core, with hysteresis so it does not flap. A quiet machine is never affected.
``WALLE_ADAPTIVE_THREADS=0`` turns it off.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


PSI_CPU = Path("/proc/pressure/cpu")


def _psi_some(field_name: str, path: Path) -> float | None:
    try:
        for line in path.read_text().splitlines():
            if line.startswith("some "):
                for field in line.split()[1:]:
                    key, _, value = field.partition("=")
                    if key == field_name:
                        return float(value)
    except (OSError, ValueError):
        return None
    return None


def psi_some_avg10(path: Path = PSI_CPU) -> float | None:
    """Percent of the last ~10 s in which some runnable task waited for a CPU."""
    return _psi_some("avg10", path)


def psi_some_total(path: Path = PSI_CPU) -> float | None:
    """Microseconds, cumulative since boot, in which some runnable task waited for a CPU."""
    return _psi_some("total", path)


class RecentPressure:
    """CPU pressure over the time since the previous call (percent), from PSI's cumulative
    counter: what is contending *now*, where avg10 still remembers a process that ended
    seconds ago (a benchmark harness runs its runners back to back). The first call, and
    machines without PSI, fall back to avg10."""

    def __init__(self, path: Path = PSI_CPU) -> None:
        self.path = path
        self.last: tuple[float, float] | None = None

    def __call__(self) -> float | None:
        total, now = psi_some_total(self.path), time.monotonic()
        if total is None:
            return None
        last, self.last = self.last, (total, now)
        if last is None or now <= last[1]:
            return psi_some_avg10(self.path)
        return 100.0 * (total - last[0]) / ((now - last[1]) * 1e6)


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


_BLAS_CAP: int | None = None


def cap_blas(n: int | None) -> None:
    """A process-wide ceiling on BLAS threads (None: none), for a backend that runs its GEMMs
    on its own thread pool with BLAS single-threaded (numba's, ``walle_backend_numba.pool``):
    OpenBLAS's workers busy-wait between calls, so any BLAS thread beyond the caller's takes a
    core from that pool. Applies at once and to every later :func:`set_blas_threads`."""
    global _BLAS_CAP
    _BLAS_CAP = n
    if n is not None:
        set_blas_threads(n)


def set_blas_threads(n: int) -> Any:
    """Limit numpy's BLAS to ``n`` threads (at most the cap); returns threadpoolctl's limiter
    (None without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    if _BLAS_CAP is not None:
        n = min(n, _BLAS_CAP)
    return threadpool_limits(limits=max(1, n), user_api="blas")


class ThreadGovernor:
    """Limits BLAS to one thread while the CPU is contended (see the module docstring);
    ``apply(n)`` sets the limit (default: BLAS; a session also tells its backends, whose
    ``limit_threads`` covers their own pools)."""

    def __init__(self, threads: int, interval: float = 0.5,
                 probe: Callable[[bool], bool] | None = None,
                 apply: Callable[[int], Any] = set_blas_threads) -> None:
        self.threads = max(1, threads)
        self.interval = interval
        self.enabled = self.threads > 1 and \
            os.environ.get("WALLE_ADAPTIVE_THREADS", "1") not in ("0", "false", "no")
        if probe is None:
            recent = RecentPressure()
            if self.enabled:
                # prime it now: the first run's check then covers the time since the session
                # was made (planning, compiling), not PSI's 10-second average, which still
                # holds a process that just ended (a benchmark's previous runner): MobileNetV2
                # ran its whole timing on one thread after one
                recent()

            def probe(previous: bool) -> bool:
                return contended(previous, psi=recent)
        self._probe = probe
        self._apply = apply
        self._last = -float("inf")
        self.busy = False
        self.switches = 0
        self._thread: int | None = None

    def tick(self) -> None:
        """Called before a run: re-check at most every ``interval`` seconds. A run on another
        Python thread than the last gets the limits applied again (numba's thread count is per
        thread)."""
        ident = threading.get_ident()
        if ident != self._thread:
            first, self._thread = self._thread is None, ident
            if not first:
                self._apply(1 if self.busy else self.threads)
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
