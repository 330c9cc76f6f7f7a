"""Tile and Expand: stride-0 views.

Expand: ``out[i] = x[i mod-broadcast]`` (stride 0 on broadcast dims). Tile with repeats r:
view x as ``(r_0, d_0, r_1, d_1, ...)`` with strides ``(0, s_0, 0, s_1, ...)``; its row-major
order is exactly the tiled output ``(r_0*d_0, r_1*d_1, ...)``.
"""

from __future__ import annotations

from walle_core.geometry.common import broadcast_shape, emit_view, expand_to
from walle_core.geometry.context import NodeContext, lowers
from walle_core.geometry.regions import row_major


@lowers("Expand")
def lower_expand(ctx: NodeContext) -> list[int]:
    want = tuple(int(d) for d in ctx.need_const(1).reshape(-1))
    shape = broadcast_shape(ctx, ctx.shape(0), want)
    out = expand_to(ctx, ctx.inputs[0], shape)
    if out == ctx.inputs[0]:
        from walle_core.geometry.reshape import relabel

        out = relabel(ctx, out, shape)
    return [out]


@lowers("Tile")
def lower_tile(ctx: NodeContext) -> list[int]:
    shape = ctx.shape(0)
    reps = [int(r) for r in ctx.need_const(1).reshape(-1)]
    if len(reps) != len(shape) or min(reps, default=0) < 0:
        raise ctx.fail(f"repeats {reps} do not fit rank {len(shape)}")
    base = row_major(shape)
    view_shape: list[int] = []
    strides: list[int] = []
    for r, d, s in zip(reps, shape, base, strict=True):
        view_shape += [r, d]
        strides += [0, s]
    out_shape = tuple(r * d for r, d in zip(reps, shape, strict=True))
    return [emit_view(ctx, ctx.inputs[0], tuple(view_shape), tuple(strides), out_shape=out_shape)]
