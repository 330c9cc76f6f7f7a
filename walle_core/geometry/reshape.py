"""Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout (inference): relabelled copies.

``out.flat = x.flat``: one identity region, which the alias pass turns into no copy at all.
Shape, Size and ConstantOfShape live here too: with concrete shapes at plan time, Shape and
Size are constants, and ConstantOfShape is a raster with a fill value and no regions.
"""

from __future__ import annotations

import numpy as np

from walle_core.geometry.context import NodeContext, lowers, norm_axis
from walle_core.geometry.regions import view_regions
from walle_core.ir import dtypes
from walle_core.ir.primitives import Raster


def relabel(ctx: NodeContext, slot: int, shape: tuple[int, ...]) -> int:
    spec = ctx.builder.slots[slot]
    if int(np.prod(shape)) != spec.size:
        raise ctx.fail(f"cannot reshape {spec.shape} ({spec.size} elements) to {shape}")
    out = ctx.out(shape, spec.dtype)
    ctx.emit(Raster(tuple(view_regions(0, (spec.size,), (1,)))), [slot], [out])
    return out


def reshape_target(ctx: NodeContext, src: tuple[int, ...], want: list[int]) -> tuple[int, ...]:
    allow_zero = bool(ctx.attr("allowzero", 0))
    dims = [src[i] if d == 0 and not allow_zero and i < len(src) else d
            for i, d in enumerate(want)]
    if dims.count(-1) > 1:
        raise ctx.fail(f"shape {want} has more than one -1")
    if -1 in dims:
        known = int(np.prod([d for d in dims if d != -1]))
        total = int(np.prod(src))
        if known == 0 or total % known:
            raise ctx.fail(f"cannot infer -1 reshaping {src} to {want}")
        dims[dims.index(-1)] = total // known
    return tuple(int(d) for d in dims)


@lowers("Reshape")
def lower_reshape(ctx: NodeContext) -> list[int]:
    want = ctx.attr("shape") if ctx.opset < 5 else ctx.need_const(1).reshape(-1).tolist()
    return [relabel(ctx, ctx.inputs[0], reshape_target(ctx, ctx.shape(0), list(want)))]


@lowers("Flatten")
def lower_flatten(ctx: NodeContext) -> list[int]:
    shape = ctx.shape(0)
    axis = ctx.attr("axis", 1)
    axis = axis + len(shape) if axis < 0 else axis
    return [relabel(ctx, ctx.inputs[0],
                    (int(np.prod(shape[:axis])), int(np.prod(shape[axis:]))))]


def _axes(ctx: NodeContext) -> list[int] | None:
    if ctx.opset >= 13:
        return ctx.need_const(1).reshape(-1).tolist() if ctx.has(1) else None
    return ctx.attr("axes")


@lowers("Squeeze")
def lower_squeeze(ctx: NodeContext) -> list[int]:
    shape = ctx.shape(0)
    axes = _axes(ctx)
    if axes is None:
        keep = [d for d in shape if d != 1]
    else:
        drop = {norm_axis(a, len(shape)) for a in axes}
        if any(shape[a] != 1 for a in drop):
            raise ctx.fail(f"cannot squeeze axes {sorted(drop)} of shape {shape}")
        keep = [d for i, d in enumerate(shape) if i not in drop]
    return [relabel(ctx, ctx.inputs[0], tuple(keep))]


@lowers("Unsqueeze")
def lower_unsqueeze(ctx: NodeContext) -> list[int]:
    shape = list(ctx.shape(0))
    axes = _axes(ctx) or []
    rank = len(shape) + len(axes)
    for a in sorted(norm_axis(a, rank) for a in axes):
        shape.insert(a, 1)
    return [relabel(ctx, ctx.inputs[0], tuple(shape))]


@lowers("Identity")
def lower_identity(ctx: NodeContext) -> list[int]:
    if ctx.const(0) is not None and not isinstance(ctx.const(0), np.ndarray):
        return [ctx.inputs[0]]  # sequences and other opaque values pass through
    return [relabel(ctx, ctx.inputs[0], ctx.shape(0))]


@lowers("Dropout")
def lower_dropout(ctx: NodeContext) -> list[int]:
    if ctx.has(2) and ctx.const(2) is not None and bool(np.asarray(ctx.const(2))):
        ratio = float(np.asarray(ctx.const(1))) if ctx.has(1) and ctx.const(1) is not None else 0.5
        if ratio != 0.0:
            from walle_core.geometry.context import Decline

            raise Decline("training-mode dropout is random")
    out = [relabel(ctx, ctx.inputs[0], ctx.shape(0))]
    if ctx.n_outputs > 1:
        out.append(ctx.const_slot(np.ones(ctx.shape(0), dtype=bool)))
    return out


@lowers("Shape")
def lower_shape(ctx: NodeContext) -> list[int]:
    shape = list(ctx.shape(0))
    rank = len(shape)
    start = ctx.attr("start", 0)
    end = ctx.attr("end", rank)
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = min(max(end + rank if end < 0 else end, 0), rank)
    return [ctx.const_slot(np.array(shape[start:end], dtype=np.int64))]


@lowers("Size")
def lower_size(ctx: NodeContext) -> list[int]:
    return [ctx.const_slot(np.array(ctx.spec(0).size, dtype=np.int64))]


@lowers("ConstantOfShape")
def lower_constant_of_shape(ctx: NodeContext) -> list[int]:
    shape = tuple(int(d) for d in ctx.need_const(0).reshape(-1))
    value = ctx.attr("value")
    value = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    out = ctx.out(shape, dtypes.from_numpy(value.dtype))
    ctx.emit(Raster((), fill=value[0].item()), [], [out])
    return [out]
