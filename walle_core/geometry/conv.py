"""Conv as im2col regions + one batched MatMul.

``col[c*K + kappa, n*O + o] = x[n, c, o*s + kappa*d - p]`` (0 outside the input), with K the
kernel volume and O the output volume; then per group g
``y[g] = W[g] (M/G x C/G*K) @ col[g] (C/G*K x N*O)`` plus bias, giving ``[M, N, O]`` which a
transpose raster turns into ``[N, M, O]`` (a no-op alias when N = 1). Each (n, kappa) is one
view region over (c, valid output box), so padding costs nothing but the zero fill.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from walle_core.geometry.context import NodeContext, lowers
from walle_core.geometry.regions import row_major, view_regions
from walle_core.geometry.reshape import relabel
from walle_core.ir.primitives import MatMul, Raster, Region


def conv_pads(
    ctx: NodeContext, sp: tuple[int, ...], k: list[int], s: list[int], d: list[int]
) -> tuple[list[int], list[int]]:
    r = len(sp)
    auto = ctx.attr("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(r):
            o = -(-sp[i] // s[i])
            total = max(0, (o - 1) * s[i] + d[i] * (k[i] - 1) + 1 - sp[i])
            small = total // 2
            begin.append(small if auto == "SAME_UPPER" else total - small)
            end.append(total - begin[-1])
        return begin, end
    if auto == "VALID":
        return [0] * r, [0] * r
    pads = ctx.attr("pads") or [0] * (2 * r)
    return list(pads[:r]), list(pads[r:])


def valid_range(o: int, s: int, kp: int, p: int, lo: int, hi: int) -> tuple[int, int]:
    """First output index and count with ``lo <= i*s + kp - p < hi``."""
    first = max(0, math.ceil((lo + p - kp) / s))
    last = min(o - 1, math.floor((hi - 1 + p - kp) / s))
    return first, max(0, last - first + 1)


def im2col_regions(
    xshape: tuple[int, ...], kshape: list[int], s: list[int], d: list[int], pb: list[int],
    oshape: tuple[int, ...], src_lo: list[int] | None = None,
) -> tuple[list[Region], bool]:
    """Regions writing ``col [C*K, N*O]`` from ``x [N, C, *sp]``; flag = needs zero fill."""
    n_batch, ch, sp = xshape[0], xshape[1], xshape[2:]
    xs, os_ = row_major(xshape), row_major(oshape)
    kvol, ovol = int(np.prod(kshape)), int(np.prod(oshape))
    regions, partial = [], False
    for n, (kidx, kpos) in itertools.product(
        range(n_batch), enumerate(itertools.product(*(range(k) for k in kshape)))
    ):
        box = [valid_range(oshape[i], s[i], kpos[i] * d[i], pb[i], 0, sp[i])
               for i in range(len(sp))]
        if any(length < box_len for (_, length), box_len in zip(box, oshape, strict=True)):
            partial = True
        if any(length == 0 for _, length in box):
            continue
        src_off = n * xs[0] + sum((f * s[i] + kpos[i] * d[i] - pb[i]) * xs[2 + i]
                                  for i, (f, _) in enumerate(box))
        dst_off = kidx * n_batch * ovol + n * ovol + sum(f * os_[i] for i, (f, _) in enumerate(box))
        shape = (ch, *(length for _, length in box))
        src_strides = (xs[1], *(s[i] * xs[2 + i] for i in range(len(sp))))
        dst_strides = (kvol * n_batch * ovol, *os_)
        regions += view_regions(0, shape, src_strides, src_off, dst_strides, dst_off)
    return regions, partial


def conv_geometry(ctx: NodeContext, wshape: tuple[int, ...]) -> tuple[list[int], ...]:
    sp = ctx.shape(0)[2:]
    r = len(sp)
    k = list(ctx.attr("kernel_shape") or wshape[2:])
    s = list(ctx.attr("strides") or [1] * r)
    d = list(ctx.attr("dilations") or [1] * r)
    pb, pe = conv_pads(ctx, sp, k, s, d)
    return k, s, d, pb, pe


@lowers("Conv")
def lower_conv(ctx: NodeContext) -> list[int]:
    xshape, wshape = ctx.shape(0), ctx.shape(1)
    if len(xshape) < 3:
        raise ctx.fail(f"input rank {len(xshape)} < 3")
    n, ch, sp = xshape[0], xshape[1], xshape[2:]
    g = int(ctx.attr("group", 1))
    m = wshape[0]
    if ch != wshape[1] * g or m % g:
        raise ctx.fail(f"channels {ch} do not match weights {wshape} with group {g}")
    k, s, d, pb, pe = conv_geometry(ctx, wshape)
    oshape = tuple((sp[i] + pb[i] + pe[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1
                   for i in range(len(sp)))
    if min(oshape, default=1) <= 0:
        raise ctx.fail(f"output size {oshape} is empty for input {xshape}")
    kvol, ovol = int(np.prod(k)), int(np.prod(oshape))
    regions, partial = im2col_regions(xshape, k, s, d, pb, oshape)
    col = ctx.out((g, ch // g * kvol, n * ovol), ctx.dtype(0))
    ctx.emit(Raster(tuple(regions), 0 if partial else None), [ctx.inputs[0]], [col])
    w = relabel(ctx, ctx.inputs[1], (g, m // g, ch // g * kvol))
    bias = relabel(ctx, ctx.inputs[2], (g, m // g, 1)) if ctx.has(2) else -1
    y = ctx.out((g, m // g, n * ovol), ctx.dtype(0))
    ctx.emit(MatMul(), [w, col, bias], [y])
    from walle_core.geometry.transpose import permuted_view

    out_shape = (n, m, *oshape)
    if n == 1:
        return [relabel(ctx, y, out_shape)]
    return [permuted_view(ctx, y, (m, n, ovol), [1, 0, 2], out_shape)]


