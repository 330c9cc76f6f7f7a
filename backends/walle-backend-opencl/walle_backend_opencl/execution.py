"""Compiling one Step for the device: a kernel when one fits, the host (numpy) otherwise.

Every planner returns None for parameters its kernel does not cover; the step then downloads
its inputs (and its output, which Raster without fill and Loop may only partly overwrite), runs
the reference backend's numpy code and uploads the result. Correctness never depends on a
kernel existing; the backend counts which path each step took.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from walle_backend_opencl import conv, elementwise, loop, matmul, raster, reduce
from walle_backend_opencl.device import DeviceBuffer, DeviceConstant, Runtime, launch
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
    Step,
    TensorSpec,
)
from walle_core.reference_backend import check_region, execute

Run = Callable[[list[Any], list[Any]], None]


def to_host(buffer: Any) -> Any:
    if isinstance(buffer, DeviceConstant):
        return np.asarray(buffer).view(np.ndarray)
    if isinstance(buffer, DeviceBuffer):
        return download(buffer)
    return buffer


def download(buffer: DeviceBuffer) -> np.ndarray:
    from walle_backend_opencl.device import runtime

    rt = runtime()
    host = np.empty(buffer.spec.shape, dtype=buffer.spec.dtype.np)
    if host.nbytes:
        rt.cl.enqueue_copy(rt.queue, host.reshape(-1).view(np.uint8), buffer.arena,
                           src_offset=buffer.offset, is_blocking=True)
    return host


def upload(array: np.ndarray, buffer: Any) -> None:
    from walle_backend_opencl.device import runtime

    if not isinstance(buffer, DeviceBuffer):  # host-only tensors (strings)
        np.copyto(buffer, np.asarray(array).reshape(buffer.shape), casting="unsafe")
        return
    rt = runtime()
    host = np.empty(buffer.spec.shape, dtype=buffer.spec.dtype.np)
    np.copyto(host, np.asarray(array).reshape(host.shape), casting="unsafe")
    if host.nbytes:
        rt.cl.enqueue_copy(rt.queue, buffer.arena, host.reshape(-1).view(np.uint8),
                           dst_offset=buffer.offset, is_blocking=True)


def plan_elementwise(rt: Runtime, expr: Any, ins: Sequence[TensorSpec | None],
                     out: TensorSpec, local: int | None = None) -> Run | None:
    if any(s is None for s in ins) or out.size == 0:
        return None
    specs = [s for s in ins if s is not None]
    if any(s.size not in (1, out.size) for s in specs):
        return None
    scalar = [s.size == 1 for s in specs]
    try:
        src = elementwise.source(expr, [s.dtype.np for s in specs], scalar, out.dtype.np,
                                 rt.ctype)
    except elementwise.Unsupported:
        return None
    kernel = rt.cl.Kernel(rt.program(src), "ew")
    n = out.size
    grid, group = launch(n, local)

    def run(i: list[Any], o: list[Any]) -> None:
        args: list[Any] = [o[0].arena, np.int64(o[0].offset)]
        for b in i:
            args += [b.arena, np.int64(b.offset)]
        kernel(rt.queue, grid, group, *args, np.int64(n))

    return run


def plan_raster(rt: Runtime, prim: Raster, ins: Sequence[TensorSpec | None],
                out: TensorSpec, local: int | None = None) -> Run | None:
    for r in prim.regions:
        src = ins[r.src]
        if src is None or src.dtype != out.dtype:
            return None
        if r.count:
            try:
                check_region(r, src.size, out.size)
            except ExecutionError:
                return None  # the reference raises its error at run time
    return raster.plan(rt, prim, out, local)


def plan_step(rt: Runtime, prim: Primitive, ins: Sequence[TensorSpec | None],
              outs: Sequence[TensorSpec], params: dict[str, Any] | None = None) -> Run | None:
    """The device runner for this step, or None when no kernel covers it.

    ``params`` picks a tuned variant (see :mod:`.tuning`): ``local`` (work-group size of the
    1-D kernels, None: the driver's choice) or ``tile``/``wpt`` (MatMul and Conv tiles);
    ``sample`` (tuning only) launches about that many multiply-adds of a MatMul/Conv.
    """
    p = params or {}
    local = p.get("local")
    if any(s is not None and s.dtype.name == "string" for s in [*ins, *outs]):
        return None
    if isinstance(prim, Raster):
        return plan_raster(rt, prim, ins, outs[0], local)
    if isinstance(prim, Elementwise):
        return plan_elementwise(rt, prim.expr, ins, outs[0], local)
    if isinstance(prim, Cast) and ins[0] is not None and not outs[0].dtype.name.startswith(
            "float8"):
        return plan_elementwise(rt, ("identity", ("in", 0)), ins, outs[0], local)
    if isinstance(prim, Reduce) and ins[0] is not None:
        return reduce.plan(rt, prim, ins[0], outs[0], local)
    if isinstance(prim, MatMul) and ins[0] is not None and ins[1] is not None:
        bias = ins[2] if len(ins) > 2 else None
        return matmul.plan(rt, prim, ins[0], ins[1], bias, outs[0],
                           p.get("tile", matmul.TILE), p.get("wpt", matmul.WPT),
                           p.get("sample", 0))
    if isinstance(prim, Loop):
        return loop.plan(rt, prim, list(ins), outs[0], local)
    if isinstance(prim, Kernel) and prim.op_type == "Conv" and prim.domain == "":
        return conv.plan(rt, prim, list(ins), outs[0], p.get("tile", matmul.TILE),
                         p.get("wpt", matmul.WPT), p.get("sample", 0))
    return None


def host_fallback(prim: Primitive) -> Run:
    def run(i: list[Any], o: list[Any]) -> None:
        host_in = [to_host(b) for b in i]
        host_out = [None if b is None else to_host(b) for b in o]
        with np.errstate(all="ignore"):
            execute(prim, host_in, host_out)
        for arr, b in zip(host_out, o, strict=True):
            if b is not None:
                upload(arr, b)

    return run


def compile_step(rt: Runtime, step: Step, ins: Sequence[TensorSpec | None],
                 outs: Sequence[TensorSpec], params: dict[str, Any] | None = None
                 ) -> tuple[Run, bool]:
    """(runner, on_device) for ``step``; errors name the primitive and its origin node."""
    prim, origin = step.prim, step.origin
    try:
        fast = plan_step(rt, prim, ins, outs, params)
    except rt.cl.Error:
        fast = None  # a kernel the driver rejects: the host still gets it right
    body = fast or host_fallback(prim)

    def run(i: Sequence[Any], o: Sequence[Any]) -> None:
        try:
            body(list(i), list(o))
        except ExecutionError:
            raise
        except Exception as exc:
            raise ExecutionError(
                f"{prim.kind} from node {origin!r} failed on opencl: {type(exc).__name__}: {exc}"
            ) from exc

    return run, fast is not None
