"""Walle's CPU SIMD backend, compiled with numba.

numba is imported only inside :meth:`NumbaBackend.probe` and the execution methods (kernel
modules load on the first ``compile``), so that listing backends never pays for LLVM's
start-up. Buffers are host numpy arrays, like the reference backend's: one uint8 arena, views
by offset.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from walle_core.backend import Availability, Device
from walle_core.hostinfo import cpu_model, usable_cores
from walle_core.plugin import PLUGIN_API_VERSION

try:  # the execution contract; absent from cores older than the tensor engine
    from walle_core.backend import ExecutionBackend as _Base
except ImportError:  # pragma: no cover - probe-only core
    from walle_core.backend import Backend as _Base  # type: ignore[assignment]

if TYPE_CHECKING:
    import numpy as np

    from walle_core.backend import Algorithm, StepTimer
    from walle_core.ir.primitives import Step, TensorSpec
    from walle_core.search.profile import CostProfile

__all__ = ["NumbaBackend"]

# numba's OpenMP workers spin a while after a parallel region before they sleep. All of a
# plan's kernels (GEMMs included, ``pool.py``) run on that pool one after another, gaps of a few
# microseconds: waking sleeping workers for each (OMP_WAIT_POLICY=PASSIVE) cost ~80 us per
# launch, spinning ~3 us. A bounded spin (about a millisecond) keeps launches cheap inside a run
# and lets idle workers sleep between runs; under contention the session's governor drops to
# one thread. Must be set before the OpenMP runtime loads (the first parallel kernel).
os.environ.setdefault("GOMP_SPINCOUNT", "30000")

#: Composite ops with numba kernels (nnops.NATIVE plus Conv), and those run natively rather
#: than decomposed (kept here so that listing backends does not import numba).
NUMBA_NATIVE = frozenset({"Conv", "MaxPool", "AveragePool", "GlobalAveragePool",
                          "GlobalMaxPool", "Softmax", "LogSoftmax", "LayerNormalization", "LRN"})
PREFERRED_NATIVE = NUMBA_NATIVE

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


class NumbaBackend(_Base):
    """CPU SIMD kernels JIT-compiled with numba (LLVM); numpy for whatever has no kernel."""

    name: ClassVar[str] = "numba"
    api_version: ClassVar[int] = PLUGIN_API_VERSION
    requires: ClassVar[tuple[str, ...]] = ("numba", "llvmlite", "numpy")
    jit_cache = True  # kernels compile on first call and are cached on disk

    @classmethod
    def probe(cls) -> Availability:
        import numba
        import numpy as np

        from walle_backend_numba import nrtcache

        nrtcache.install()

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

    # ---- execution contract -------------------------------------------------------------

    def __init__(self, threads: int | None = None) -> None:
        super().__init__(threads)
        from walle_backend_numba import nrtcache
        from walle_backend_numba.threads import configure

        nrtcache.install()  # before numba's first dispatch in this process

        self.threads_used = configure(threads)
        self.compiled_steps = 0
        self.fallback_steps = 0

    def limit_threads(self, n: int) -> None:
        """numba's pool (which runs the GEMMs too in pool mode, ``threads.py``)."""
        from walle_backend_numba.threads import limit

        limit(n)

    def fused_activations(self) -> set[tuple[str, str]]:
        """Conv applies a fused relu/clip/sigmoid/tanh in its bias pass (``conv.plan``)."""
        return {("", "Conv")}

    def fused_adds(self) -> set[tuple[str, str]]:
        """Conv adds a fused residual in its bias pass (Winograd: in its output transform)."""
        return {("", "Conv")}

    def channels_last_ops(self) -> set[tuple[str, str]]:
        """Depthwise and group-1 Convs on NHWC tensors (``nhwc.py``), and global pools
        reading them (``nnops.global_pool_nhwc``)."""
        return {("", "Conv"), ("", "GlobalAveragePool"), ("", "GlobalMaxPool")}

    def native_ops(self) -> set[tuple[str, str]]:
        """numba kernels for Conv, pooling, softmax, layer norm; every other composite op runs
        the reference numpy kernel."""
        from walle_core.reference_backend import reference_native_ops

        return reference_native_ops() | {("", op) for op in NUMBA_NATIVE}

    def prefers_native(self, domain: str, op_type: str) -> bool:
        # Native Conv skips im2col regions and the output transpose, and depthwise avoids a
        # batch of M=1 GEMMs; pooling/softmax/layer norm are one pass instead of a chain of
        # Raster/Reduce/Elementwise steps (README: measured). Shapes a kernel does not cover
        # run the reference numpy kernel.
        return domain == "" and op_type in PREFERRED_NATIVE

    def allocate(self, nbytes: int) -> np.ndarray:
        import numpy as np

        return np.empty(max(nbytes, 1), dtype=np.uint8)

    def view(self, arena: np.ndarray, offset: int, spec: TensorSpec) -> np.ndarray:
        import numpy as np

        if spec.dtype.name == "string":
            return np.empty(spec.shape, dtype=object)
        return arena[offset:offset + spec.nbytes].view(spec.dtype.np).reshape(spec.shape)

    def constant(self, array: np.ndarray) -> np.ndarray:
        import numpy as np

        # not np.ascontiguousarray: it turns 0-d constants (Size, scalar shapes) into 1-d.
        # A read-only view (no copy): kernels may cache what they derive from a constant
        # (Winograd-transformed weights) for as long as they see the same read-only buffer.
        view = np.asarray(array, order="C").view()
        view.flags.writeable = False
        return view

    def upload(self, array: np.ndarray, buffer: np.ndarray) -> None:
        import numpy as np

        np.copyto(buffer, array.reshape(buffer.shape), casting="unsafe")

    def download(self, buffer: np.ndarray) -> np.ndarray:
        import numpy as np

        return np.array(buffer, copy=True)

    def compile(self, step: Step, inputs: Sequence[TensorSpec | None],
                outputs: Sequence[TensorSpec], algorithm: Algorithm | None = None) -> Any:
        from walle_backend_numba.execution import compile_step

        variant = None if algorithm is None or algorithm.name == "default" else algorithm.name
        run, fast = compile_step(step, inputs, outputs, variant)
        if variant is not None and not fast:
            raise ValueError(f"numba cannot run {step.prim.kind} from {step.origin!r} with "
                             f"algorithm {variant!r}")
        if fast:
            self.compiled_steps += 1
        else:
            self.fallback_steps += 1
        return run


    def algorithms(self, step: Step, inputs: Sequence[TensorSpec | None],
                   outputs: Sequence[TensorSpec], profile: CostProfile) -> list[Algorithm]:
        """Conv: every variant that fits the shape (pointwise, depthwise, im2col, Winograd
        F2/F4, the micro-kernel's), costed by roofline x measured efficiency; a Linear-shaped
        MatMul: BLAS or the micro-kernel; other steps: the core's estimate."""
        from walle_backend_numba.costs import algorithms

        return algorithms(step, inputs, outputs, profile)

    def calibrate_extra(self, time_step: StepTimer) -> dict[str, float]:
        """Times each Conv variant, and a MatMul both ways, once at a representative shape
        (for algorithms())."""
        from walle_backend_numba.costs import calibrate_extra

        return calibrate_extra(time_step)

    def calibration_key(self) -> str:
        from walle_backend_numba.costs import KERNELS_VERSION

        return f"{super().calibration_key()}|kernels={KERNELS_VERSION}"


def _llvm_version() -> str:
    import llvmlite.binding as llvm

    return ".".join(str(part) for part in llvm.llvm_version_info)
