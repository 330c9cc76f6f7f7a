"""One thread policy for numba's parallel kernels and the BLAS behind the GEMMs.

Steps of a plan run one after another on the thread that calls ``Session.run``. The policy
puts all of them on one pool, numba's: BLAS is single-threaded and each GEMM is split over the
pool (``pool.py``), so no second pool's workers busy-wait on the cores numba's kernels need
(before, OpenBLAS's spinning worker took the second core of the 2-core VM for the whole run and
numba's kernels had to stay serial). Measured there, threads=2, medians: MobileNetV2 8.4 ->
6.5 ms, ResNet-18 22.0 -> 17.0 ms.

The budget ``threads`` (default: the cores this process may use) is never more than numba was
started with. Where numpy's OpenBLAS cannot be bound or numba's threading layer is not safe
for concurrent launches (workqueue), or with ``WALLE_NUMBA_PARALLEL=0``, the old policy holds:
BLAS gets the budget and numba's kernels run serial on small machines. BLAS is limited with
threadpoolctl (through ``walle_core.runtime.governor``, which also caps it process-wide), else
through the environment (which only works before numpy is imported, hence
:func:`limit_blas_env` for launchers).
"""

from __future__ import annotations

import os
from typing import Any

_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "BLIS_NUM_THREADS")
_limiter: Any = None


def default_threads() -> int:
    """Cores this process may run on (affinity aware)."""
    from walle_core.runtime.governor import cores

    return cores()


def limit_blas_env(threads: int) -> None:
    """Set BLAS thread variables; effective only if numpy has not loaded BLAS yet."""
    for name in _BLAS_ENV:
        os.environ.setdefault(name, str(threads))


#: Whether GEMMs run on numba's pool (``pool.Gemm``) with BLAS single-threaded: set by
#: :func:`configure`. Read by the kernels at plan time.
POOL = False
_budget = 1


def numba_parallel(threads: int) -> int:
    """Threads for numba's own parallel kernels when GEMMs stay with a multi-threaded BLAS
    (no :mod:`pool`): OpenBLAS's workers busy-wait between GEMMs and take the other cores, so
    numba's kernels run serial unless the machine has more than 4 cores or
    ``WALLE_NUMBA_PARALLEL=1`` (measured on the 2-core VM, ResNet-18 threads=2: numba parallel
    + BLAS 2 threads 256 ms, numba serial + BLAS 2 threads 55 ms)."""
    flag = os.environ.get("WALLE_NUMBA_PARALLEL", "")
    if flag in ("1", "true", "yes"):
        return threads
    if flag in ("0", "false", "no"):
        return 1
    return threads if default_threads() > 4 else 1


def _threadsafe_layer() -> bool:
    """Whether the threading layer numba will start is safe for concurrent launches from
    several Python threads (OpenMP or TBB; not workqueue). Decided as numba decides, by the
    configured layer or the first of its priority list whose pool module imports, without
    launching anything (that would load LLVM's target here rather than with the first
    kernel)."""
    import importlib

    import numba

    layer = str(numba.config.THREADING_LAYER).lower()
    if layer in ("tbb", "omp", "safe", "threadsafe"):
        return True
    if layer == "workqueue":
        return False
    for name in numba.config.THREADING_LAYER_PRIORITY:
        if layer == "forksafe" and name == "omp":
            continue  # numba's fork-safe choice skips GNU OpenMP
        try:
            importlib.import_module(f"numba.np.ufunc.{name}pool")
        except ImportError:
            continue
        return name in ("tbb", "omp")
    return False


def configure(threads: int | None = None) -> int:
    """Apply the policy; returns the thread budget.

    One pool: when numpy's OpenBLAS can be bound (:mod:`pool`) and numba's threading layer is
    thread-safe, BLAS runs single-threaded and every kernel, GEMMs included, runs on numba's
    pool with the whole budget. Otherwise BLAS gets the budget and numba's kernels get
    :func:`numba_parallel` of it. ``WALLE_NUMBA_PARALLEL=0`` forces the latter.
    """
    global _limiter, POOL, _budget
    import numba

    from walle_backend_numba import pool

    wanted = threads if threads and threads > 0 else default_threads()
    wanted = max(1, min(wanted, numba.config.NUMBA_NUM_THREADS))
    _budget = wanted
    flag = os.environ.get("WALLE_NUMBA_PARALLEL", "")
    POOL = wanted > 1 and pool.available() and flag not in ("0", "false", "no") and \
        _threadsafe_layer()
    numba.set_num_threads(wanted if POOL else numba_parallel(wanted))
    try:
        from walle_core.runtime.governor import cap_blas, set_blas_threads
    except ImportError:  # pragma: no cover - a core without the governor
        limit_blas_env(1 if POOL else wanted)
        return wanted
    cap_blas(1 if POOL else None)
    _limiter = set_blas_threads(wanted)
    return wanted


def limit(n: int) -> None:
    """At most ``n`` of numba's threads from now on, in this Python thread (the session's
    governor: one while the CPU is contended, the budget again when not; numba's thread count
    is per Python thread, so also when a session runs on a new thread). BLAS is the session's."""
    import numba

    n = max(1, min(n, _budget))
    numba.set_num_threads(n if POOL else min(numba_parallel(_budget), n))


def blas_threads() -> int | None:
    """Threads the loaded BLAS uses, when threadpoolctl can tell."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    counts = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
    return max(counts) if counts else None
