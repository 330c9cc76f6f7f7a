"""Emission helpers shared by decomposers: views, broadcasts and small elementwise programs."""

from __future__ import annotations

import numpy as np

from walle_core.geometry.context import NodeContext
from walle_core.geometry.regions import row_major, view_regions
from walle_core.ir.dtypes import DType
from walle_core.ir.primitives import Elementwise, Expr, Raster, Region


def emit_view(
    ctx: NodeContext, src: int, shape: tuple[int, ...], strides: tuple[int, ...], offset: int = 0,
    out_shape: tuple[int, ...] | None = None,
) -> int:
    """A new slot holding the strided view of ``src`` (element strides, may be 0 or < 0),
    stored row-major and labelled ``out_shape`` (default ``shape``)."""
    out = ctx.out(shape if out_shape is None else out_shape, ctx.builder.slots[src].dtype)
    ctx.emit(Raster(tuple(view_regions(0, shape, strides, offset))), [src], [out])
    return out


def emit_raster(
    ctx: NodeContext, out: int, srcs: list[int], regions: list[Region],
    fill: float | int | None = None,
) -> int:
    ctx.emit(Raster(tuple(regions), fill), srcs, [out])
    return out


def broadcast_shape(ctx: NodeContext, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in np.broadcast_shapes(*shapes))
    except ValueError:
        raise ctx.fail(f"shapes {' and '.join(map(str, shapes))} do not broadcast") from None


def expand_to(ctx: NodeContext, slot: int, shape: tuple[int, ...]) -> int:
    """``slot`` broadcast to ``shape`` (materialised by a stride-0 raster when needed)."""
    src = ctx.builder.slots[slot].shape
    if src == shape:
        return slot
    pad = len(shape) - len(src)
    full = (1,) * pad + src
    base = (0,) * pad + row_major(src)
    strides = tuple(0 if n == 1 and m != 1 else s
                    for n, m, s in zip(full, shape, base, strict=True))
    return emit_view(ctx, slot, shape, strides)


def operand(ctx: NodeContext, slot: int, shape: tuple[int, ...]) -> int:
    """An Elementwise operand: the output's shape or a single element."""
    spec = ctx.builder.slots[slot]
    if spec.shape == shape or (spec.size == 1 and int(np.prod(shape)) != 0):
        return slot
    return expand_to(ctx, slot, shape)


def elementwise(
    ctx: NodeContext, expr: Expr, slots: list[int], shape: tuple[int, ...], dtype: DType,
    compute: DType | None = None,
) -> int:
    """Emit ``expr`` over ``slots`` (broadcast first) into a new slot of ``shape``."""
    args = [operand(ctx, s, shape) for s in slots]
    out = ctx.out(shape, dtype)
    ctx.emit(Elementwise(expr, compute), args, [out])
    return out


X0: Expr = ("in", 0)
X1: Expr = ("in", 1)
X2: Expr = ("in", 2)


def c(value: float | int | bool) -> Expr:
    return ("const", value)
