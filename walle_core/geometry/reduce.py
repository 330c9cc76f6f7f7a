"""Reduce* and ArgMax/ArgMin: one Reduce primitive each.

``out[j] = R_{i in axes}(x[j, i])`` with R one of sum, mean, max, min, prod, sum of squares,
L1, L2, log-sum, log-sum-exp. Axes come from the attribute (before opset 13 for ReduceSum, 18
for the others) or the second input; no axes means all axes unless noop_with_empty_axes.
"""

from __future__ import annotations

from walle_core.geometry.context import NodeContext, lowers, norm_axis
from walle_core.geometry.reshape import relabel
from walle_core.ir import dtypes
from walle_core.ir.primitives import Reduce

REDUCE = {
    "ReduceSum": "sum", "ReduceMean": "mean", "ReduceMax": "max", "ReduceMin": "min",
    "ReduceProd": "prod", "ReduceSumSquare": "sum_square", "ReduceL1": "l1", "ReduceL2": "l2",
    "ReduceLogSum": "log_sum", "ReduceLogSumExp": "log_sum_exp",
}


def _axes(ctx: NodeContext, rank: int) -> tuple[int, ...] | None:
    input_axes = ctx.opset >= (13 if ctx.op_type == "ReduceSum" else 18)
    if input_axes:
        axes = ctx.need_const(1).reshape(-1).tolist() if ctx.has(1) else []
    else:
        axes = ctx.attr("axes") or []
    if not axes:
        return None if ctx.attr("noop_with_empty_axes", 0) else tuple(range(rank))
    return tuple(sorted({norm_axis(int(a), rank) for a in axes}))


@lowers(*REDUCE)
def lower_reduce(ctx: NodeContext) -> list[int]:
    shape = ctx.shape(0)
    axes = _axes(ctx, len(shape))
    if axes is None:
        return [relabel(ctx, ctx.inputs[0], shape)]
    keep = bool(ctx.attr("keepdims", 1))
    out_shape = tuple(1 if i in axes else d for i, d in enumerate(shape) if keep or i not in axes)
    out = ctx.out(out_shape, ctx.dtype(0))
    ctx.emit(Reduce(REDUCE[ctx.op_type], axes, keep), [ctx.inputs[0]], [out])
    return [out]


@lowers("ArgMax", "ArgMin")
def lower_arg(ctx: NodeContext) -> list[int]:
    shape = ctx.shape(0)
    axis = norm_axis(ctx.attr("axis", 0), len(shape))
    keep = bool(ctx.attr("keepdims", 1))
    out_shape = tuple(1 if i == axis else d for i, d in enumerate(shape) if keep or i != axis)
    out = ctx.out(out_shape, dtypes.int64)
    op = "argmax" if ctx.op_type == "ArgMax" else "argmin"
    last = bool(ctx.attr("select_last_index", 0))
    ctx.emit(Reduce(op, (axis,), keep, last), [ctx.inputs[0]], [out])
    return [out]
