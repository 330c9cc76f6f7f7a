"""Slice and Split: boxes of the input, as strided views.

Slice: ``out[i] = x[start + i * step]`` per sliced axis (start/end clamped as ONNX says), so the
view has offset ``sum(start_a * stride_a)`` and strides ``step_a * stride_a``. Split: output k
is the box ``[off_k, off_k + len_k)`` along ``axis``.
"""

from __future__ import annotations

from walle_core.geometry.common import emit_view
from walle_core.geometry.context import NodeContext, lowers, norm_axis
from walle_core.geometry.regions import row_major


def clamp_range(start: int, end: int, step: int, dim: int) -> tuple[int, int]:
    """(start, length) of ``range(start, end, step)`` clamped to a dim of size ``dim``."""
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        length = max(0, -(-(end - start) // step))
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
        length = max(0, -(-(start - end) // -step))
    return start, length


def box_view(
    ctx: NodeContext, src: int, starts: list[int], lengths: list[int], steps: list[int]
) -> int:
    shape = ctx.builder.slots[src].shape
    base = row_major(shape)
    offset = sum(s * b for s, b in zip(starts, base, strict=True)) if all(lengths) else 0
    strides = tuple(st * b for st, b in zip(steps, base, strict=True))
    return emit_view(ctx, src, tuple(lengths), strides, offset)


def _slice_params(ctx: NodeContext) -> tuple[list[int], list[int], list[int], list[int]]:
    rank = len(ctx.shape(0))
    if ctx.opset < 10:
        starts, ends = list(ctx.attr("starts")), list(ctx.attr("ends"))
        axes = ctx.attr("axes") or list(range(len(starts)))
        steps = [1] * len(starts)
    else:
        starts = ctx.need_const(1).reshape(-1).tolist()
        ends = ctx.need_const(2).reshape(-1).tolist()
        axes = ctx.need_const(3).reshape(-1).tolist() if ctx.has(3) else list(range(len(starts)))
        steps = ctx.need_const(4).reshape(-1).tolist() if ctx.has(4) else [1] * len(starts)
    return starts, ends, [norm_axis(a, rank) for a in axes], steps


@lowers("Slice")
def lower_slice(ctx: NodeContext) -> list[int]:
    shape = ctx.shape(0)
    starts, ends, axes, steps = _slice_params(ctx)
    first, lengths, strides = [0] * len(shape), list(shape), [1] * len(shape)
    big = 2**62
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        if st == 0:
            raise ctx.fail("slice step 0")
        s, e = max(min(int(s), big), -big), max(min(int(e), big), -big)
        first[a], lengths[a] = clamp_range(s, e, int(st), shape[a])
        strides[a] = int(st)
    return [box_view(ctx, ctx.inputs[0], first, lengths, strides)]


def _split_sizes(ctx: NodeContext, dim: int) -> list[int]:
    split = None
    if ctx.opset >= 13 and ctx.has(1):
        split = ctx.need_const(1).reshape(-1).tolist()
    elif ctx.opset < 13:
        split = ctx.attr("split")
    if split:
        return [int(s) for s in split]
    n = ctx.attr("num_outputs", ctx.n_outputs)
    chunk = -(-dim // n)
    sizes = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
    return sizes


@lowers("Split")
def lower_split(ctx: NodeContext) -> list[int]:
    shape = ctx.shape(0)
    axis = norm_axis(ctx.attr("axis", 0), len(shape))
    sizes = _split_sizes(ctx, shape[axis])
    if sum(sizes) != shape[axis] or min(sizes, default=0) < 0:
        raise ctx.fail(f"split sizes {sizes} do not add up to dim {shape[axis]}")
    outs, offset = [], 0
    for size in sizes:
        starts = [0] * len(shape)
        starts[axis] = offset
        lengths = list(shape)
        lengths[axis] = size
        outs.append(box_view(ctx, ctx.inputs[0], starts, lengths, [1] * len(shape)))
        offset += size
    return outs


@lowers("Concat")
def lower_concat(ctx: NodeContext) -> list[int]:
    """Concat: input k lands at offset ``sum(len_j, j < k)`` along ``axis``, one view each."""
    from walle_core.geometry.regions import view_regions
    from walle_core.ir.primitives import Raster

    slots = [s for s in ctx.inputs if s >= 0]
    shapes = [ctx.builder.slots[s].shape for s in slots]
    rank = len(shapes[0])
    axis = norm_axis(ctx.attr("axis", 0), rank)
    for s in shapes:
        if len(s) != rank or any(a != b for i, (a, b) in enumerate(zip(s, shapes[0], strict=True))
                                 if i != axis):
            raise ctx.fail(f"cannot concatenate shapes {shapes} on axis {axis}")
    out_shape = list(shapes[0])
    out_shape[axis] = sum(s[axis] for s in shapes)
    dst = row_major(tuple(out_shape))
    regions, offset = [], 0
    for k, s in enumerate(shapes):
        regions += view_regions(k, s, row_major(s), 0, dst, offset * dst[axis])
        offset += s[axis]
    out = ctx.out(tuple(out_shape), ctx.builder.slots[slots[0]].dtype)
    ctx.emit(Raster(tuple(regions)), slots, [out])
    return [out]


