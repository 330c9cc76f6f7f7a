"""Softmax and LogSoftmax: Reduce max, Elementwise exp, Reduce sum, Elementwise divide.

``m = max_a x; e = exp(x - m); y = e / sum_a e`` (log: ``y = x - m - log(sum_a e)``). Before
opset 13 the op works on x coerced to 2-D at ``axis`` (default 1), so reduce over all trailing
axes; from 13 on over the single ``axis`` (default -1).
"""

from __future__ import annotations

from walle_core.geometry.common import X0, X1, elementwise
from walle_core.geometry.context import NodeContext, lowers, norm_axis
from walle_core.ir.primitives import Reduce


@lowers("Softmax", "LogSoftmax")
def lower_softmax(ctx: NodeContext) -> list[int]:
    shape = ctx.shape(0)
    rank = len(shape)
    if ctx.opset < 13:
        axes = tuple(range(norm_axis(ctx.attr("axis", 1), rank), rank))
    else:
        axes = (norm_axis(ctx.attr("axis", -1), rank),)
    dtype = ctx.dtype(0)
    red_shape = tuple(1 if i in axes else d for i, d in enumerate(shape))
    m = ctx.out(red_shape, dtype)
    ctx.emit(Reduce("max", axes, True), [ctx.inputs[0]], [m])
    shifted = elementwise(ctx, ("sub", X0, X1), [ctx.inputs[0], m], shape, dtype)
    e = elementwise(ctx, ("exp", X0), [shifted], shape, dtype)
    s = ctx.out(red_shape, dtype)
    ctx.emit(Reduce("sum", axes, True), [e], [s])
    if ctx.op_type == "Softmax":
        return [elementwise(ctx, ("div", X0, X1), [e, s], shape, dtype)]
    return [elementwise(ctx, ("sub", X0, ("log", X1)), [shifted, s], shape, dtype)]
