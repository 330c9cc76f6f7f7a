"""Pooling as raster windows + Reduce.

Treat ``x [N, C, *sp]`` as ``[1, N*C, *sp]`` and build im2col windows
``win[nc, kappa, o] = x[nc, o*s + kappa*d - p]`` (fill -inf for max, 0 for average), then
``y = reduce_{kappa}(win)``; average divides by the window count, which is a plan-time constant
``prod_i count_i(o_i)`` (positions inside the input, or inside the padded input when
count_include_pad). Global pools are a Reduce over the spatial axes.
"""

from __future__ import annotations

import numpy as np

from walle_core.geometry.common import X0, X1, elementwise
from walle_core.geometry.context import Decline, NodeContext, lowers
from walle_core.geometry.conv import conv_pads, im2col_regions, valid_range
from walle_core.geometry.reshape import relabel
from walle_core.ir.primitives import Raster, Reduce


def _out_size(sp: int, k: int, s: int, d: int, pb: int, pe: int, ceil: bool) -> int:
    span = sp + pb + pe - d * (k - 1) - 1
    o = (-(-span // s) if ceil else span // s) + 1
    if ceil and (o - 1) * s >= sp + pb:
        o -= 1
    return o


def _counts(oshape: tuple[int, ...], k: list[int], s: list[int], d: list[int], pb: list[int],
            lo: list[int], hi: list[int]) -> np.ndarray:
    count = np.ones((), dtype=np.float64)
    for i, o in enumerate(oshape):
        per = np.zeros(o)
        for kp in range(k[i]):
            first, length = valid_range(o, s[i], kp * d[i], pb[i], lo[i], hi[i])
            per[first:first + length] += 1
        count = np.multiply.outer(count, per)
    return count


@lowers("MaxPool", "AveragePool")
def lower_pool(ctx: NodeContext) -> list[int]:
    if ctx.n_outputs > 1 and ctx.op_type == "MaxPool":
        raise Decline("MaxPool indices output")
    xshape = ctx.shape(0)
    n, ch, sp = xshape[0], xshape[1], xshape[2:]
    r = len(sp)
    k = list(ctx.attr("kernel_shape"))
    s = list(ctx.attr("strides") or [1] * r)
    d = list(ctx.attr("dilations") or [1] * r)
    pb, pe = conv_pads(ctx, sp, k, s, d)
    ceil = bool(ctx.attr("ceil_mode", 0))
    oshape = tuple(_out_size(sp[i], k[i], s[i], d[i], pb[i], pe[i], ceil) for i in range(r))
    kvol = int(np.prod(k))
    regions, partial = im2col_regions((1, n * ch, *sp), k, s, d, pb, oshape)
    dtype = ctx.dtype(0)
    is_max = ctx.op_type == "MaxPool"
    if is_max:
        fill = -np.inf if dtype.is_float else int(np.iinfo(dtype.np).min)
    else:
        fill = 0
    win = ctx.out((n * ch, kvol, int(np.prod(oshape))), dtype)
    ctx.emit(Raster(tuple(regions), fill if partial else None), [ctx.inputs[0]], [win])
    red = ctx.out((n * ch, int(np.prod(oshape))), dtype)
    ctx.emit(Reduce("max" if is_max else "sum", (1,), keepdims=False), [win], [red])
    out_shape = (n, ch, *oshape)
    if is_max:
        return [relabel(ctx, red, out_shape)]
    include = bool(ctx.attr("count_include_pad", 0))
    lo = [-p for p in pb] if include else [0] * r
    hi = [sp[i] + pe[i] for i in range(r)] if include else list(sp)
    count = _counts(oshape, k, s, d, pb, lo, hi).reshape(1, -1).astype(dtype.np)
    avg = elementwise(ctx, ("div", X0, X1), [red, ctx.const_slot(count)], red_shape(n, ch, oshape),
                      dtype)
    return [relabel(ctx, avg, out_shape)]


def red_shape(n: int, ch: int, oshape: tuple[int, ...]) -> tuple[int, ...]:
    return (n * ch, int(np.prod(oshape)))


@lowers("GlobalAveragePool", "GlobalMaxPool")
def lower_global_pool(ctx: NodeContext) -> list[int]:
    shape = ctx.shape(0)
    op = "mean" if ctx.op_type == "GlobalAveragePool" else "max"
    out = ctx.out(shape[:2] + (1,) * (len(shape) - 2), ctx.dtype(0))
    ctx.emit(Reduce(op, tuple(range(2, len(shape))), keepdims=True), [ctx.inputs[0]], [out])
    return [out]
