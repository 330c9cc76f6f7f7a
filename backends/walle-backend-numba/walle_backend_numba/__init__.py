"""Walle's CPU SIMD backend, compiled with numba.

numba is imported only inside :meth:`NumbaBackend.probe` (and, later, kernel compilation), so that
listing backends never pays for LLVM's start-up.
"""

from __future__ import annotations

from typing import Any, ClassVar

from walle_core.backend import Availability, Backend, Device
from walle_core.hostinfo import cpu_model, usable_cores
from walle_core.plugin import PLUGIN_API_VERSION

__all__ = ["NumbaBackend"]

_SIMD_FLAGS = ("sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw", "neon", "sve")


def _smoke_kernel() -> Any:
    import numba
    import numpy as np

    @numba.njit(parallel=True, fastmath=True, cache=False)
    def axpy(alpha: float, x: Any, y: Any) -> Any:  # pragma: no cover - compiled
        out = np.empty_like(x)
        for i in numba.prange(x.shape[0]):
            out[i] = alpha * x[i] + y[i]
        return out

    return axpy


def _simd_features() -> list[str]:
    import llvmlite.binding as llvm

    features = llvm.get_host_cpu_features()
    return [flag for flag in _SIMD_FLAGS if features.get(flag)]


class NumbaBackend(Backend):
    """CPU SIMD kernels JIT-compiled with numba (LLVM)."""

    name: ClassVar[str] = "numba"
    api_version: ClassVar[int] = PLUGIN_API_VERSION
    requires: ClassVar[tuple[str, ...]] = ("numba", "llvmlite", "numpy")

    @classmethod
    def probe(cls) -> Availability:
        import numba
        import numpy as np

        x = np.arange(1024, dtype=np.float32)
        y = np.ones(1024, dtype=np.float32)
        got = _smoke_kernel()(np.float32(2.0), x, y)
        if not np.array_equal(got, 2 * x + 1):
            return Availability.unavailable("numba smoke kernel returned a wrong result")
        device = Device(
            name=cpu_model(),
            kind="cpu",
            platform=f"numba {numba.__version__} (LLVM {_llvm_version()})",
            details={
                "cores": usable_cores(),
                "threads": numba.config.NUMBA_NUM_THREADS,
                "threading_layer": numba.threading_layer(),
                "simd": _simd_features(),
            },
        )
        return Availability(ok=True, devices=(device,))


def _llvm_version() -> str:
    import llvmlite.binding as llvm

    return ".".join(str(part) for part in llvm.llvm_version_info)
