"""ConvTranspose as one batched MatMul + col2im accumulate regions.

``col[g] = W[g]^T (M/G*K x C/G) @ x[g] (C/G x N*I)``, then for every kernel offset kappa and
input position i: ``y[n, m, i*s + kappa*d - p] += col[m*K + kappa, n*I + i]``; each (n, kappa)
is one accumulate region over (m, valid input box). Output size per axis:
``s*(I-1) + output_padding + (k-1)*d + 1 - p_begin - p_end`` (or ``output_shape``, with the
pads derived from it). Bias is a broadcast Elementwise add.
"""

from __future__ import annotations

import itertools

import numpy as np

from walle_core.geometry.common import X0, X1, elementwise
from walle_core.geometry.context import NodeContext, lowers
from walle_core.geometry.regions import row_major, view_regions
from walle_core.geometry.reshape import relabel
from walle_core.geometry.transpose import permuted_view
from walle_core.ir.primitives import MatMul, Raster


def _pads(ctx: NodeContext, sp: tuple[int, ...], k: list[int], s: list[int], d: list[int]
          ) -> tuple[list[int], list[int], list[int]]:
    r = len(sp)
    op = list(ctx.attr("output_padding") or [0] * r)
    full = [s[i] * (sp[i] - 1) + op[i] + (k[i] - 1) * d[i] + 1 for i in range(r)]
    want = ctx.attr("output_shape")
    auto = ctx.attr("auto_pad", "NOTSET")
    if want or auto in ("SAME_UPPER", "SAME_LOWER"):
        want = list(want)[-r:] if want else [sp[i] * s[i] for i in range(r)]
        total = [full[i] - want[i] for i in range(r)]
        upper = auto == "SAME_UPPER"
        pb = [t // 2 if upper else t - t // 2 for t in total]
        return pb, [t - b for t, b in zip(total, pb, strict=True)], want
    pads = ctx.attr("pads") or [0] * (2 * r)
    if auto == "VALID":
        pads = [0] * (2 * r)
    pb, pe = list(pads[:r]), list(pads[r:])
    return pb, pe, [full[i] - pb[i] - pe[i] for i in range(r)]


@lowers("ConvTranspose")
def lower_conv_transpose(ctx: NodeContext) -> list[int]:
    xshape, wshape = ctx.shape(0), ctx.shape(1)
    n, ch, sp = xshape[0], xshape[1], xshape[2:]
    r = len(sp)
    g = int(ctx.attr("group", 1))
    mg = wshape[1]
    k = list(ctx.attr("kernel_shape") or wshape[2:])
    s = list(ctx.attr("strides") or [1] * r)
    d = list(ctx.attr("dilations") or [1] * r)
    pb, _, osp = _pads(ctx, sp, k, s, d)
    kvol, ivol = int(np.prod(k)), int(np.prod(sp))
    xt = permuted_view(ctx, ctx.inputs[0], (n, ch, ivol), [1, 0, 2], (g, ch // g, n * ivol))
    w = relabel(ctx, ctx.inputs[1], (g, ch // g, mg * kvol))
    col = ctx.out((g, mg * kvol, n * ivol), ctx.dtype(0))
    ctx.emit(MatMul(trans_a=True), [w, xt, -1], [col])
    m = mg * g
    oshape = (n, m, *osp)
    ys, is_ = row_major(oshape), row_major(tuple(sp))
    regions = []
    for b, (kidx, kpos) in itertools.product(
        range(n), enumerate(itertools.product(*(range(kk) for kk in k)))
    ):
        box = []
        for i in range(r):
            # input positions i with 0 <= i*s + kp*d - p < osp
            lo = max(0, -(-(pb[i] - kpos[i] * d[i]) // s[i]))
            hi = min(sp[i] - 1, (osp[i] - 1 + pb[i] - kpos[i] * d[i]) // s[i])
            box.append((lo, max(0, hi - lo + 1)))
        if any(length == 0 for _, length in box):
            continue
        src_off = kidx * n * ivol + b * ivol + sum(f * is_[i] for i, (f, _) in enumerate(box))
        dst_off = b * ys[0] + sum((f * s[i] + kpos[i] * d[i] - pb[i]) * ys[2 + i]
                                  for i, (f, _) in enumerate(box))
        shape = (m, *(length for _, length in box))
        src_strides = (kvol * n * ivol, *is_)
        dst_strides = (ys[1], *(s[i] * ys[2 + i] for i in range(r)))
        regions += view_regions(0, shape, src_strides, src_off, dst_strides, dst_off)
    y = ctx.out(oshape, ctx.dtype(0))
    ctx.emit(Raster(tuple(regions), 0, accumulate=True), [col], [y])
    if ctx.has(2):
        bias = relabel(ctx, ctx.inputs[2], (m,) + (1,) * r)
        y = elementwise(ctx, ("add", X0, X1), [y, bias], oshape, ctx.dtype(0))
    return [y]
