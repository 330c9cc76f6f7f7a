"""Pad in every mode as one raster of boxes.

Per axis with pads (b, e) and (cropped) input length d, the output splits into a left part
[0, b), the body [b, b+d) (``src = i - b``) and a right part [b+d, b+d+e). Each part is affine
in the output index: edge ``src = 0`` / ``d-1`` (stride 0), reflect ``src = b - i`` /
``d-2-j`` (stride -1), wrap ``src = d - b + i`` / ``j`` (stride 1). The output is the
product of the parts over all axes: at most 3^rank boxes, each one strided view; constant mode
fills first and copies only the body. Negative pads crop the input first.
"""

from __future__ import annotations

import itertools

import numpy as np

from walle_core.geometry.context import Decline, NodeContext, lowers, norm_axis
from walle_core.geometry.regions import row_major, view_regions
from walle_core.ir.primitives import Raster

Part = tuple[int, int, int, int]  # out_start, length, src_start, src_step


def axis_parts(mode: str, b: int, e: int, d: int, crop: int) -> list[Part]:
    parts: list[Part] = [(b, d, crop, 1)]
    if mode == "constant" or (b == 0 and e == 0):
        return parts
    if d == 0:
        raise Decline("cannot pad an empty axis by edge/reflect/wrap")
    if mode == "edge":
        parts += [(0, b, crop, 0), (b + d, e, crop + d - 1, 0)]
    elif mode == "reflect":
        if max(b, e) > d - 1:
            raise Decline("reflect pad wider than the input")
        parts += [(0, b, crop + b, -1), (b + d, e, crop + d - 2, -1)]
    elif mode == "wrap":
        if max(b, e) > d:
            raise Decline("wrap pad wider than the input")
        parts += [(0, b, crop + d - b, 1), (b + d, e, crop, 1)]
    else:
        raise Decline(f"pad mode {mode!r}")
    return [p for p in parts if p[1] > 0]


def _pads(ctx: NodeContext, rank: int) -> tuple[list[int], float | int]:
    if ctx.opset < 11:
        pads, value = list(ctx.attr("pads", ctx.attr("paddings"))), ctx.attr("value", 0.0)
    else:
        pads = ctx.need_const(1).reshape(-1).tolist()
        value = ctx.need_const(2).reshape(-1)[0].item() if ctx.has(2) else 0
    if ctx.has(3):  # opset 18 axes
        axes = [norm_axis(int(a), rank) for a in ctx.need_const(3).reshape(-1)]
        full = [0] * (2 * rank)
        for k, a in enumerate(axes):
            full[a], full[a + rank] = pads[k], pads[k + len(axes)]
        pads = full
    if len(pads) != 2 * rank:
        raise ctx.fail(f"pads {pads} do not fit rank {rank}")
    return [int(p) for p in pads], value


@lowers("Pad")
def lower_pad(ctx: NodeContext) -> list[int]:
    shape = ctx.shape(0)
    rank = len(shape)
    mode = ctx.attr("mode", "constant")
    pads, value = _pads(ctx, rank)
    per_axis, out_shape = [], []
    for a, d in enumerate(shape):
        b, e = pads[a], pads[a + rank]
        crop = max(-b, 0)
        length = d - crop - max(-e, 0)
        if length < 0:
            raise ctx.fail(f"negative pads crop axis {a} below zero")
        per_axis.append(axis_parts(mode, max(b, 0), max(e, 0), length, crop))
        out_shape.append(max(b, 0) + length + max(e, 0))
    src_strides, dst_strides = row_major(shape), row_major(tuple(out_shape))
    regions = []
    for combo in itertools.product(*per_axis):
        box = tuple(p[1] for p in combo)
        src_off = sum(p[2] * s for p, s in zip(combo, src_strides, strict=True))
        dst_off = sum(p[0] * s for p, s in zip(combo, dst_strides, strict=True))
        steps = tuple(p[3] * s for p, s in zip(combo, src_strides, strict=True))
        if all(box):
            regions += view_regions(0, box, steps, src_off, dst_strides, dst_off)
    dtype = ctx.dtype(0)
    fill = np.asarray(value).astype(dtype.np).item() if mode == "constant" else None
    out = ctx.out(tuple(out_shape), dtype)
    ctx.emit(Raster(tuple(regions), fill), [ctx.inputs[0]], [out])
    return [out]
