"""One thread policy for numba's parallel kernels and the BLAS behind ``np.matmul``.

Steps of a plan run one after another, so numba's pool and BLAS's pool take turns rather than
compete; the danger is each pool sizing itself to the whole machine *and* other sessions or
libraries doing the same. The policy: both pools get the same budget ``threads`` (default: the
cores this process may use), never more than numba was started with. BLAS is limited with
threadpoolctl when it is installed, else through the environment (which only works before
numpy is imported, hence :func:`limit_blas_env` for launchers).
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


def numba_parallel(threads: int) -> int:
    """Threads for numba's own parallel kernels.

    At batch 1 the numba kernels (copies, fused elementwise, depthwise, pooling) are short and
    memory-bound, while every parallel region ends in a barrier: on a small machine shared
    with other work, one descheduled worker stalls the whole region for a time slice. Measured
    on the 2-core VM under load (ResNet-18, threads=2): numba parallel + BLAS 2 threads 256 ms,
    numba serial + BLAS 2 threads 55 ms. So numba's kernels run serial unless the machine has
    more than 4 cores or ``WALLE_NUMBA_PARALLEL=1``; BLAS (the GEMMs) keeps the thread budget.
    """
    flag = os.environ.get("WALLE_NUMBA_PARALLEL", "")
    if flag in ("1", "true", "yes"):
        return threads
    if flag in ("0", "false", "no"):
        return 1
    return threads if default_threads() > 4 else 1


def configure(threads: int | None = None) -> int:
    """Apply the policy; returns the thread budget (BLAS threads; numba's kernels get
    :func:`numba_parallel` of it)."""
    global _limiter
    import numba

    wanted = threads if threads and threads > 0 else default_threads()
    wanted = max(1, min(wanted, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(numba_parallel(wanted))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        limit_blas_env(wanted)
    else:
        _limiter = threadpool_limits(limits=wanted, user_api="blas")
    return wanted


def blas_threads() -> int | None:
    """Threads the loaded BLAS uses, when threadpoolctl can tell."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    counts = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
    return max(counts) if counts else None
