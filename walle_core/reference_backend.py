"""The reference backend: plain numpy, the living definition of every primitive.

Registered under ``walle.backends`` as ``reference`` exactly like an external backend. Every
other backend is tested against it, so kernels here favour being obviously right over speed:
buffers are numpy views into one uint8 arena, each primitive is a few numpy calls. Composite ops
that geometry does not lower run through ``walle_core.reference_ops`` kernels.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from walle_core.backend import (
    Algorithm,
    Availability,
    CompiledStep,
    Device,
    ExecutionBackend,
    StepTimer,
)
from walle_core.ir.errors import ExecutionError
from walle_core.ir.primitives import (
    Cast,
    Elementwise,
    Kernel,
    Loop,
    MatMul,
    Primitive,
    Raster,
    Reduce,
    Region,
    Step,
    TensorSpec,
)
from walle_core.plugin import PLUGIN_API_VERSION
from walle_core.runtime import numpy_kernels as nk

if TYPE_CHECKING:
    from walle_core.search.profile import CostProfile


@lru_cache(maxsize=1)
def _native_ops() -> frozenset[tuple[str, str]]:
    try:
        from walle_core.reference_ops import supported_ops
    except ImportError:
        return frozenset()
    return frozenset(("" if d == "ai.onnx" else d, op) for d, op in supported_ops())


def reference_native_ops() -> set[tuple[str, str]]:
    """Composite ``(domain, op_type)`` that the numpy kernels of :mod:`walle_core.reference_ops`
    run; every backend may offer them as host kernels (domain ``ai.onnx`` spelt ``""``)."""
    return set(_native_ops())


class ReferenceBackend(ExecutionBackend):
    """Pure-numpy reference implementation of every primitive (the definition others match)."""

    name: ClassVar[str] = "reference"
    api_version: ClassVar[int] = PLUGIN_API_VERSION
    requires: ClassVar[tuple[str, ...]] = ("numpy",)

    def __init__(self, threads: int | None = None) -> None:
        super().__init__(threads)
        if threads:  # numpy's BLAS is the only pool here (capped by a backend that owns GEMMs)
            from walle_core.runtime.governor import set_blas_threads

            self._blas_limit = set_blas_threads(threads)

    @classmethod
    def probe(cls) -> Availability:
        import numpy as np

        a = np.arange(6, dtype=np.float32).reshape(2, 3)
        got = a @ a.T
        if not np.array_equal(got, np.array([[5, 14], [14, 50]], dtype=np.float32)):
            return Availability.unavailable(f"numpy matmul smoke test gave {got.tolist()}")
        cpu = Device(
            name=platform.processor() or platform.machine(),
            kind="cpu",
            platform=f"numpy {np.__version__}",
        )
        return Availability(ok=True, devices=(cpu,))

    def native_ops(self) -> set[tuple[str, str]]:
        return reference_native_ops()

    def fused_activations(self) -> set[tuple[str, str]]:
        return reference_native_ops()  # applied after any kernel (numpy_kernels.activation)

    def fused_adds(self) -> set[tuple[str, str]]:
        return reference_native_ops()  # added after any kernel, before the activation

    def channels_last_ops(self) -> set[tuple[str, str]]:
        # transposed to NCHW around the numpy kernels (``kernel``)
        return {("", "Conv"), ("", "GlobalAveragePool"), ("", "GlobalMaxPool")}

    def algorithms(self, step: Step, inputs: Sequence[TensorSpec | None],
                   outputs: Sequence[TensorSpec], profile: CostProfile) -> list[Algorithm]:
        """The analytic estimate, plus for Conv the numpy kernel's real shape: one einsum per
        (group, kernel position), each with a fixed Python cost measured at calibration."""
        cost = profile.estimate(step, inputs, outputs)
        prim = step.prim
        if isinstance(prim, Kernel) and prim.op_type in ("Conv", "ConvInteger") and \
                len(inputs) > 1 and inputs[1] is not None:
            positions = 1
            kernel_dims = inputs[1].shape[:2] if prim.attrs.get("layout") == "NHWC" else \
                inputs[1].shape[2:]
            for k in kernel_dims:
                positions *= k
            iters = int(prim.attrs.get("group", 1)) * positions
            cost += iters * profile.extra.get("conv_iteration_s", 1e-5)
            return [Algorithm("numpy", cost, note=f"{iters} einsum calls")]
        return [Algorithm("numpy", cost)]

    def calibrate_extra(self, time_step: StepTimer) -> dict[str, float]:
        from walle_core.ir.dtypes import from_numpy

        f32 = from_numpy(np.float32)
        c = 32
        dw = Kernel("Conv", "", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "group": c}, 13)
        t = time_step(dw, [TensorSpec((1, c, 14, 14), f32), TensorSpec((c, 1, 3, 3), f32), None],
                      [TensorSpec((1, c, 14, 14), f32)], None)
        return {"conv_iteration_s": t / (c * 9)}

    def allocate(self, nbytes: int) -> np.ndarray:
        return np.empty(max(nbytes, 1), dtype=np.uint8)

    def view(self, arena: np.ndarray, offset: int, spec: TensorSpec) -> np.ndarray:
        if spec.dtype.name == "string":
            return np.empty(spec.shape, dtype=object)
        raw = arena[offset:offset + spec.nbytes]
        return raw.view(spec.dtype.np).reshape(spec.shape)

    def constant(self, array: np.ndarray) -> np.ndarray:
        return np.asarray(array, order="C")

    def upload(self, array: np.ndarray, buffer: np.ndarray) -> None:
        np.copyto(buffer, array.reshape(buffer.shape), casting="unsafe")

    def download(self, buffer: np.ndarray) -> np.ndarray:
        return np.array(buffer, copy=True)

    def compile(
        self, step: Step, inputs: Sequence[TensorSpec | None], outputs: Sequence[TensorSpec],
        algorithm: Algorithm | None = None,
    ) -> CompiledStep:
        prim = step.prim
        origin = step.origin

        def run(ins: Sequence[Any], outs: Sequence[Any]) -> None:
            try:
                with np.errstate(all="ignore"):
                    execute(prim, list(ins), list(outs))
            except ExecutionError:
                raise
            except Exception as exc:
                raise ExecutionError(
                    f"{prim.kind} from node {origin!r} failed: {type(exc).__name__}: {exc}"
                ) from exc

        return run


def execute(prim: Primitive, ins: list[Any], outs: list[Any]) -> None:
    """Run ``prim`` reading numpy arrays ``ins`` and writing into ``outs`` in place."""
    if isinstance(prim, Raster):
        raster(prim, ins, outs[0])
    elif isinstance(prim, Elementwise):
        result = nk.evaluate(prim.expr, ins, outs[0].shape)
        np.copyto(outs[0], np.asarray(result).astype(outs[0].dtype, copy=False), casting="unsafe")
    elif isinstance(prim, Reduce):
        np.copyto(outs[0], nk.reduce(prim, ins[0]).astype(outs[0].dtype, copy=False).reshape(
            outs[0].shape))
    elif isinstance(prim, MatMul):
        np.copyto(outs[0], nk.matmul(prim, ins[0], ins[1], ins[2]), casting="unsafe")
    elif isinstance(prim, Cast):
        np.copyto(outs[0], ins[0].astype(outs[0].dtype), casting="unsafe")
    elif isinstance(prim, Loop):
        nk.loop(prim, ins, outs[0])
    elif isinstance(prim, Kernel):
        kernel(prim, ins, outs)
    else:
        raise ExecutionError(f"reference backend has no primitive {prim.kind}")


def region_view(flat: np.ndarray, offset: int, strides: tuple[int, ...],
                size: tuple[int, ...]) -> np.ndarray:
    item = flat.itemsize
    base = flat[offset:] if offset < flat.size else flat[:0]
    return np.lib.stride_tricks.as_strided(
        base, shape=size, strides=tuple(s * item for s in strides)
    )


def raster(prim: Raster, ins: list[np.ndarray], out: np.ndarray) -> None:
    """Fill, then copy (or add) each region; views via as_strided on flat buffers."""
    flat = out.reshape(-1)
    if prim.fill is not None:
        flat.fill(prim.fill)
    for r in prim.regions:
        if r.count == 0:
            continue
        check_region(r, ins[r.src].size, flat.size)
        src = region_view(ins[r.src].reshape(-1), r.src_offset, r.src_strides, r.size)
        dst = region_view(flat, r.dst_offset, r.dst_strides, r.size)
        if prim.accumulate:
            dst += src
        else:
            dst[...] = src


def check_region(r: Region, src_size: int, dst_size: int) -> None:
    """Guard as_strided: every addressed element must lie inside its buffer."""
    for off, strides, limit, what in ((r.src_offset, r.src_strides, src_size, "source"),
                                      (r.dst_offset, r.dst_strides, dst_size, "destination")):
        lo = off + sum(min(0, s * (n - 1)) for s, n in zip(strides, r.size, strict=True))
        hi = off + sum(max(0, s * (n - 1)) for s, n in zip(strides, r.size, strict=True))
        if lo < 0 or hi >= limit:
            raise ExecutionError(f"region {r} reaches outside its {what} ({limit} elements)")


def kernel(prim: Kernel, ins: list[Any], outs: list[Any]) -> None:
    from walle_core.reference_ops import get_kernel

    fn = get_kernel(prim.op_type, prim.domain)
    if fn is None:
        raise ExecutionError(f"no reference kernel for {prim.domain or 'ai.onnx'}::{prim.op_type}")
    residual = None
    if prim.attrs.get("fused_add"):  # the last input is added to the first output
        residual, ins = ins[-1], list(ins[:-1])
        while ins and ins[-1] is None:
            ins.pop()
    nhwc = prim.attrs.get("layout") == "NHWC"  # channels-last (runtime/layout.py)
    if nhwc and prim.op_type != "Conv":  # a global pool: [N, C, 1, 1] out either way
        ins = [np.asarray(ins[0]).transpose(0, 3, 1, 2)]
        nhwc = False
    elif nhwc:
        x = np.asarray(ins[0])  # NCHW already for a chain's first Conv (input_layout)
        ins = [x if prim.attrs.get("input_layout") == "NCHW" else x.transpose(0, 3, 1, 2),
               np.asarray(ins[1]).transpose(3, 2, 0, 1), *ins[2:]]
    results = list(fn(ins, prim.attrs, prim.opset))
    if nhwc and results:
        results[0] = np.asarray(results[0]).transpose(0, 2, 3, 1)
    if residual is not None and results:
        first = np.asarray(results[0])
        results[0] = (first + np.asarray(residual)).astype(first.dtype, copy=False)
    activation = prim.attrs.get("fused_activation")
    if activation and results:
        results[0] = nk.activation(np.asarray(results[0]), activation,
                                   prim.attrs.get("fused_act_params", ()))
    for out, res in zip(outs, results, strict=False):
        if out is None:
            continue
        res = np.asarray(res)
        if res.shape != out.shape:
            raise ExecutionError(
                f"{prim.op_type} kernel returned shape {res.shape}, planned {out.shape}"
            )
        np.copyto(out, res, casting="unsafe")
