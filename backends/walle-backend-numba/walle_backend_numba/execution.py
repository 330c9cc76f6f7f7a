"""Compiling one Step into a callable: the numba kernel when one fits, numpy otherwise.

Every ``plan`` function returns None for parameters its kernel does not cover, and the step
then runs through the reference backend's numpy code, so correctness never depends on a
kernel existing. Buffers are numpy views into one uint8 arena (as in the reference backend),
which numba kernels accept directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from walle_backend_numba import conv, elementwise, gather, matmul, nhwc, nnops, raster, reduce
from walle_backend_numba.binding import flat_views, with_bind
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
from walle_core.reference_backend import execute

Run = Callable[[list[Any], list[Any]], None]
FAST_NATIVE = frozenset({("", "Conv")} | {("", op) for op in nnops.NATIVE})
_NUMBA_KINDS = frozenset("biuf")


def numeric(spec: TensorSpec | None) -> bool:
    if spec is None:
        return True
    dt = spec.dtype.np
    return dt.kind in _NUMBA_KINDS and dt.name != "float16" and dt.isbuiltin == 1


def plan_raster(prim: Raster, ins: Sequence[TensorSpec | None], out: TensorSpec) -> Run | None:
    if not numeric(out) or any(s is not None and s.dtype != out.dtype for s in ins):
        return None
    for r in prim.regions:
        src = ins[r.src]
        if src is None or r.count == 0:
            continue
        try:
            from walle_core.reference_backend import check_region

            check_region(r, src.size, out.size)
        except ExecutionError:
            return None  # let the reference raise its error at run time
    run = raster.plan(prim)
    if run is None:
        return None
    run_bind = run.bind  # type: ignore[attr-defined]
    return with_bind(lambda i, o: run(i, o[0]), lambda i, o: run_bind(i, o[0]))


def plan_elementwise(prim: Elementwise, ins: Sequence[TensorSpec | None],
                     out: TensorSpec) -> Run | None:
    if any(s is None for s in ins) or not all(numeric(s) for s in [*ins, out]):
        return None
    specs = [s for s in ins if s is not None]
    if any(s.size not in (1, out.size) for s in specs):
        return None
    scalar = [s.size == 1 and out.size != 1 for s in specs]
    try:
        kernel = elementwise.build(prim.expr, [s.dtype.np for s in specs], scalar,
                                   out.dtype.np, out.size)
    except elementwise.Unsupported:
        return None

    memo: list[Any] = [None, None]  # buffer ids -> flat views (a plan passes the same ones)

    def run(i: list[Any], o: list[Any]) -> None:
        key = (id(o[0]), *map(id, i))  # the memo holds the buffers: ids stay unique
        if memo[0] != key:
            memo[0], memo[1] = key, (o[0].reshape(-1), *(a.reshape(-1) for a in i))
        kernel(*memo[1])

    def bind(i: list[Any], o: list[Any]) -> Callable[[], None] | None:
        flats = flat_views([o[0], *i])
        return None if flats is None else partial(kernel, *flats)

    run.bind = bind  # type: ignore[attr-defined]
    return run


def plan_cast(x: TensorSpec | None, out: TensorSpec) -> Run | None:
    """A numeric Cast as numpy's own conversion, straight into the output (the reference's
    ``astype`` then copy made a temporary and cost 18 us for BERT's 128-element mask). From
    float to integer or bool stays with the reference, under its ``errstate`` (NaN warns)."""
    if x is None or not (numeric(x) and numeric(out)) or x.shape != out.shape:
        return None
    if x.dtype.np.kind == "f" and out.dtype.np.kind in "iub":
        return None

    def run(i: list[Any], o: list[Any]) -> None:
        np.copyto(o[0], i[0], casting="unsafe")

    return with_bind(run, lambda i, o: partial(np.copyto, o[0], i[0], casting="unsafe"))


def plan_step(prim: Primitive, ins: Sequence[TensorSpec | None],
              outs: Sequence[TensorSpec], variant: str | None = None) -> Run | None:
    """The kernel-backed runner for this step (``variant``: the algorithm's name, None for the
    default), or None to use numpy."""
    if isinstance(prim, Raster):
        return plan_raster(prim, ins, outs[0])
    if isinstance(prim, Loop):
        return gather.plan(prim, ins, outs[0])
    if isinstance(prim, Elementwise):
        return plan_elementwise(prim, ins, outs[0])
    if isinstance(prim, Cast):
        return plan_cast(ins[0], outs[0])
    if isinstance(prim, Reduce) and ins[0] is not None:
        red = reduce.plan(prim, ins[0].shape, ins[0].dtype.np, outs[0].dtype.np)
        if red is None:
            return None
        red_bind = red.bind  # type: ignore[attr-defined]
        return with_bind(lambda i, o: red(i[0], o[0]), lambda i, o: red_bind(i[0], o[0]))
    if isinstance(prim, MatMul) and ins[0] is not None and ins[1] is not None:
        bias = ins[2] if len(ins) > 2 else None
        mm = matmul.plan(prim, ins[0], ins[1], bias, outs[0], variant)
        if mm is None:
            return None
        mm_bind = mm.bind  # type: ignore[attr-defined]
        return with_bind(lambda i, o: mm(i[0], i[1], i[2] if len(i) > 2 else None, o[0]),
                         lambda i, o: mm_bind(i[0], i[1], i[2] if len(i) > 2 else None, o[0]))
    if isinstance(prim, Kernel) and (prim.domain, prim.op_type) == ("", "Conv"):
        if len(ins) < 2 or ins[0] is None or ins[1] is None:
            return None
        planner = nhwc.plan if prim.attrs.get("layout") == "NHWC" else conv.plan
        if prim.attrs.get("fused_add"):  # [x, w, bias or -1, residual]
            if len(ins) != 4 or ins[3] is None or ins[3].shape != outs[0].shape or \
                    ins[3].dtype != outs[0].dtype:
                return None
            cv = planner(prim.attrs, ins[0], ins[1], ins[2], outs[0], variant)
            if cv is None:
                return None
            run_res: Run = lambda i, o: cv(i[0], i[1], i[2], o[0], i[3])  # noqa: E731
            cv_bind = getattr(cv, "bind", None)
            return run_res if cv_bind is None else with_bind(
                run_res, lambda i, o: cv_bind(i[0], i[1], i[2], o[0], i[3]))
        bias = ins[2] if len(ins) > 2 else None
        cv = planner(prim.attrs, ins[0], ins[1], bias, outs[0], variant)
        if cv is None:
            return None
        run_cv: Run = lambda i, o: cv(i[0], i[1], i[2] if len(i) > 2 else None, o[0])  # noqa: E731
        cv_bind2 = getattr(cv, "bind", None)
        return run_cv if cv_bind2 is None else with_bind(
            run_cv, lambda i, o: cv_bind2(i[0], i[1], i[2] if len(i) > 2 else None, o[0]))
    if isinstance(prim, Kernel) and prim.domain == "" and prim.op_type in nnops.NATIVE:
        return nnops.plan(prim.op_type, prim.attrs, prim.opset, ins, outs)
    return None


def compile_step(step: Step, ins: Sequence[TensorSpec | None],
                 outs: Sequence[TensorSpec], variant: str | None = None) -> tuple[Run, bool]:
    """(runner, uses_numba) for ``step``; errors name the primitive and its origin node."""
    prim, origin = step.prim, step.origin
    fast = plan_step(prim, ins, outs, variant)

    def fallback(i: list[Any], o: list[Any]) -> None:
        with np.errstate(all="ignore"):
            execute(prim, i, o)

    body = fast or fallback
    fast_bind = getattr(fast, "bind", None)

    def bind(i: list[Any], o: list[Any]) -> Callable[[], None]:
        """The step on these buffers; errors are named by the executor."""
        bound = fast_bind(i, o) if fast_bind is not None else None
        return bound if bound is not None else partial(body, i, o)

    def run(i: Sequence[Any], o: Sequence[Any]) -> None:
        try:
            body(i, o)  # type: ignore[arg-type]
        except ExecutionError:
            raise
        except Exception as exc:
            raise ExecutionError(
                f"{prim.kind} from node {origin!r} failed on numba: {type(exc).__name__}: {exc}"
            ) from exc

    run.bind = bind  # type: ignore[attr-defined]
    return run, fast is not None
