"""Reduce over one contiguous block of axes, as ``[outer, red, inner] -> [outer, inner]``.

Any axes set that is contiguous once size-1 dims are ignored (the common cases: last axis for
softmax/layer-norm, spatial axes for global pooling, middle axes) maps to that 3-D view of the
flat input with no copy. Sums are reassociated (fastmath ``reassoc``) so LLVM vectorises them;
max/min propagate NaN like numpy. Other ops, dtypes or axes sets return None (numpy path).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numba
import numpy as np

from walle_backend_numba.binding import views
from walle_backend_numba.jit import dual
from walle_core.ir.primitives import Reduce

OPS = {"sum": 0, "mean": 1, "max": 2, "min": 3, "sum_square": 4, "l1": 5, "l2": 6}
_FM = {"reassoc", "contract"}


@numba.njit(cache=True, inline="always")
def _term(v: Any, op: int) -> Any:  # pragma: no cover
    if op == 4 or op == 6:
        return v * v
    if op == 5:
        return abs(v)
    return v


@dual(fastmath=_FM)
def reduce_3d(x: Any, out: Any, op: int) -> None:  # pragma: no cover
    """x [outer, red, inner] -> out [outer, inner]; op codes as in OPS."""
    outer, red, inner = x.shape
    for o in numba.prange(outer):
        if inner == 1:
            if op == 2 or op == 3:
                acc = x[o, 0, 0]
                for r in range(1, red):
                    v = x[o, r, 0]
                    if op == 2:
                        acc = acc if (acc >= v or acc != acc) else v
                    else:
                        acc = acc if (acc <= v or acc != acc) else v
            else:
                acc = x[o, 0, 0] - x[o, 0, 0]
                for r in range(red):
                    acc += _term(x[o, r, 0], op)
            out[o, 0] = acc
            continue
        for k in range(inner):
            out[o, k] = x[o, 0, k] if op in (2, 3) else _term(x[o, 0, k], op)
        for r in range(1, red):
            for k in range(inner):
                v = x[o, r, k]
                a = out[o, k]
                if op == 2:
                    out[o, k] = a if (a >= v or a != a) else v
                elif op == 3:
                    out[o, k] = a if (a <= v or a != a) else v
                else:
                    out[o, k] = a + _term(v, op)
    if op == 1 or op == 6:
        for o in numba.prange(outer):
            for k in range(inner):
                out[o, k] = out[o, k] / red if op == 1 else np.sqrt(out[o, k])


def block(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, int, int] | None:
    """(outer, red, inner) when the reduced non-unit dims are adjacent, else None."""
    rank = len(shape)
    wanted = {a % rank for a in axes} if rank else set()
    flags = [(d, i in wanted) for i, d in enumerate(shape) if d != 1]
    marks = [f for _, f in flags]
    if True in marks:
        first, last = marks.index(True), len(marks) - 1 - marks[::-1].index(True)
        if not all(marks[first:last + 1]):
            return None
    else:
        first = last = len(marks)
        last -= 1
    dims = [d for d, _ in flags]
    return (int(np.prod(dims[:first])), int(np.prod(dims[first:last + 1])),
            int(np.prod(dims[last + 1:])))


def plan(prim: Reduce, in_shape: tuple[int, ...], dtype: np.dtype[Any],
         out_dtype: np.dtype[Any]) -> Callable[[np.ndarray, np.ndarray], None] | None:
    if prim.op not in OPS or dtype.name not in ("float32", "float64") or dtype != out_dtype:
        return None
    if any(in_shape[a] == 0 for a in prim.axes) or 0 in in_shape:
        return None
    dims = block(in_shape, prim.axes)
    if dims is None:
        return None
    outer, red, inner = dims
    op = OPS[prim.op]
    kernel = reduce_3d.pick(outer * red * inner)

    def run(x: np.ndarray, out: np.ndarray) -> None:
        kernel(x.reshape(outer, red, inner), out.reshape(outer, inner), op)

    def bind(x: np.ndarray, out: np.ndarray) -> Callable[[], None] | None:
        v = views((x, (outer, red, inner)), (out, (outer, inner)))
        return None if v is None else partial(kernel, *v, op)

    run.bind = bind  # type: ignore[attr-defined]
    return run
