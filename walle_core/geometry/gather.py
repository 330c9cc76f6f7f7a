"""Gather and Scatter families: constant indices become regions, run-time ones a Loop.

Gather(axis): view x as ``[outer, A, inner]``; ``out[o, i, :] = x[o, idx[i], :]``. Constant
indices give one region per index; run-time ones a :class:`Loop` with ``src_offsets =
norm(idx) * inner`` computed by an Elementwise. GatherElements / ScatterElements: per element
``off(p) = sum_{k != axis} p_k * s_k + norm(idx[p]) * s_axis`` (the first term is a plan-time
constant). GatherND / ScatterND: ``off = batch * batch_stride + sum_m norm(idx[..., m]) *
s_{b+m}`` (Elementwise then Reduce sum), each offset moving a contiguous slice of
``prod(shape[b+k:])`` elements. ``norm(i) = i + dim if i < 0 else i``.
"""

from __future__ import annotations

import numpy as np

from walle_core.geometry.common import X0, X1, c, elementwise
from walle_core.geometry.context import NodeContext, lowers, norm_axis
from walle_core.geometry.regions import row_major, view_regions
from walle_core.ir import dtypes
from walle_core.ir.primitives import Expr, Loop, Raster, Reduce, Region

MAX_CONST_REGIONS = 256


def _norm(expr: Expr, dim: Expr) -> Expr:
    return ("where", ("lt", expr, c(0)), ("add", expr, dim), expr)


def _offsets(ctx: NodeContext, idx: int, dim: int, stride: int, base: np.ndarray | None) -> int:
    """Slot of ``base + norm(idx) * stride`` (int64, shape of idx)."""
    shape = ctx.builder.slots[idx].shape
    expr: Expr = ("mul", _norm(("in", 0), c(dim)), c(stride))
    slots = [idx]
    if base is not None:
        expr = ("add", X1, expr)
        slots.append(ctx.const_slot(base.astype(np.int64)))
    return elementwise(ctx, expr, slots, shape, dtypes.int64, dtypes.int64)


def _check_const_indices(ctx: NodeContext, idx: np.ndarray, dim: int) -> np.ndarray:
    idx = np.where(idx < 0, idx + dim, idx).astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= dim):
        raise ctx.fail(f"index out of range [{-dim}, {dim - 1}]")
    return idx


@lowers("Gather")
def lower_gather(ctx: NodeContext) -> list[int]:
    shape = ctx.shape(0)
    axis = norm_axis(ctx.attr("axis", 0), len(shape))
    outer, dim, inner = int(np.prod(shape[:axis])), shape[axis], int(np.prod(shape[axis + 1:]))
    ishape = ctx.shape(1)
    n = int(np.prod(ishape))
    out = ctx.out(shape[:axis] + ishape + shape[axis + 1:], ctx.dtype(0))
    const = ctx.const(1)
    if const is not None and n <= MAX_CONST_REGIONS:
        idx = _check_const_indices(ctx, np.asarray(const).reshape(-1), dim)
        regions = []
        for i, v in enumerate(idx.tolist()):
            regions += view_regions(0, (outer, inner), (dim * inner, 1), v * inner,
                                    (n * inner, 1), i * inner)
        ctx.emit(Raster(tuple(regions)), [ctx.inputs[0]], [out])
        return [out]
    offsets = _offsets(ctx, ctx.inputs[1], dim, inner, None)
    region = Region(0, 0, (0, dim * inner, 1), 0, (0, n * inner, 1), (1, outer, inner))
    ctx.emit(Loop(n, region, has_src_offsets=True, dst_step=inner),
             [-1, ctx.inputs[0], offsets, -1], [out])
    return [out]


def _element_base(shape: tuple[int, ...], strides: tuple[int, ...], axis: int) -> np.ndarray:
    """``sum_{k != axis} p_k * strides_k`` for every position p of ``shape``."""
    base = np.zeros(shape, dtype=np.int64)
    for k, s in enumerate(strides):
        if k != axis:
            view = [1] * len(shape)
            view[k] = shape[k]
            base = base + (np.arange(shape[k], dtype=np.int64) * s).reshape(view)
    return base


@lowers("GatherElements")
def lower_gather_elements(ctx: NodeContext) -> list[int]:
    shape, ishape = ctx.shape(0), ctx.shape(1)
    axis = norm_axis(ctx.attr("axis", 0), len(shape))
    strides = row_major(shape)
    base = _element_base(ishape, strides, axis)
    offsets = _offsets(ctx, ctx.inputs[1], shape[axis], strides[axis], base)
    out = ctx.out(ishape, ctx.dtype(0))
    n = int(np.prod(ishape))
    region = Region(0, 0, (0, 0, 0), 0, (0, 0, 0), (1, 1, 1))
    ctx.emit(Loop(n, region, has_src_offsets=True, dst_step=1),
             [-1, ctx.inputs[0], offsets, -1], [out])
    return [out]


@lowers("ScatterElements", "Scatter")
def lower_scatter_elements(ctx: NodeContext) -> list[int]:
    shape, ishape = ctx.shape(0), ctx.shape(1)
    axis = norm_axis(ctx.attr("axis", 0), len(shape))
    strides = row_major(shape)
    base = _element_base(ishape, strides, axis)
    offsets = _offsets(ctx, ctx.inputs[1], shape[axis], strides[axis], base)
    out = ctx.out(shape, ctx.dtype(0))
    n = int(np.prod(ishape))
    region = Region(0, 0, (0, 0, 0), 0, (0, 0, 0), (1, 1, 1))
    reduction = ctx.attr("reduction", "none")
    ctx.emit(Loop(n, region, has_base=True, has_dst_offsets=True, src_step=1,
                  reduction=reduction), [ctx.inputs[0], ctx.inputs[2], -1, offsets], [out])
    return [out]


def _nd_offsets(ctx: NodeContext, shape: tuple[int, ...], batch: int) -> tuple[int, int, int]:
    """(offsets slot, count, slice size) for GatherND/ScatterND indices (input 1)."""
    ishape = ctx.shape(1)
    k = ishape[-1]
    strides = row_major(shape)
    dims = np.array(shape[batch:batch + k], dtype=np.int64)
    full = np.broadcast_to(dims, ishape)
    step = np.broadcast_to(np.array(strides[batch:batch + k], dtype=np.int64), ishape)
    expr: Expr = ("mul", _norm(X0, X1), ("in", 2))
    terms = elementwise(ctx, expr, [ctx.inputs[1], ctx.const_slot(full), ctx.const_slot(step)],
                        ishape, dtypes.int64, dtypes.int64)
    summed = ctx.out(ishape[:-1], dtypes.int64)
    ctx.emit(Reduce("sum", (len(ishape) - 1,), keepdims=False), [terms], [summed])
    count = int(np.prod(ishape[:-1]))
    if batch:
        per_batch = int(np.prod(ishape[batch:-1]))
        bstride = int(np.prod(shape[batch:]))
        base = np.repeat(np.arange(int(np.prod(ishape[:batch])), dtype=np.int64) * bstride,
                         per_batch).reshape(ishape[:-1])
        summed = elementwise(ctx, ("add", X0, X1), [summed, ctx.const_slot(base)],
                             ishape[:-1], dtypes.int64, dtypes.int64)
    return summed, count, int(np.prod(shape[batch + k:]))


@lowers("GatherND")
def lower_gather_nd(ctx: NodeContext) -> list[int]:
    shape, ishape = ctx.shape(0), ctx.shape(1)
    batch = ctx.attr("batch_dims", 0)
    offsets, count, piece = _nd_offsets(ctx, shape, batch)
    out = ctx.out(ishape[:-1] + shape[batch + ishape[-1]:], ctx.dtype(0))
    region = Region(0, 0, (0, 0, 1), 0, (0, 0, 1), (1, 1, piece))
    ctx.emit(Loop(count, region, has_src_offsets=True, dst_step=piece),
             [-1, ctx.inputs[0], offsets, -1], [out])
    return [out]


@lowers("ScatterND")
def lower_scatter_nd(ctx: NodeContext) -> list[int]:
    shape = ctx.shape(0)
    offsets, count, piece = _nd_offsets(ctx, shape, 0)
    out = ctx.out(shape, ctx.dtype(0))
    region = Region(0, 0, (0, 0, 1), 0, (0, 0, 1), (1, 1, piece))
    ctx.emit(Loop(count, region, has_base=True, has_dst_offsets=True, src_step=piece,
                  reduction=ctx.attr("reduction", "none")),
             [ctx.inputs[0], ctx.inputs[2], -1, offsets], [out])
    return [out]
