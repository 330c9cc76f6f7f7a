"""Transpose, DepthToSpace, SpaceToDepth: permuted strided views.

Transpose: ``out[i_0..i_n] = x[j]`` with ``j[perm[k]] = i_k``, so out stride k = x stride
perm[k]. DepthToSpace (DCR): ``x.reshape(N, b, b, C/b², H, W).transpose(0,3,4,1,5,2)``;
CRD: ``x.reshape(N, C/b², b, b, H, W).transpose(0,1,4,2,5,3)``; SpaceToDepth:
``x.reshape(N, C, H/b, b, W/b, b).transpose(0,3,5,1,2,4)`` (CRD: ``(0,1,3,5,2,4)``).
Each is one raster of views.
"""

from __future__ import annotations

from walle_core.geometry.common import emit_view
from walle_core.geometry.context import NodeContext, lowers
from walle_core.geometry.regions import row_major


def permuted_view(
    ctx: NodeContext, src: int, shape: tuple[int, ...], perm: list[int],
    out_shape: tuple[int, ...] | None = None,
) -> int:
    """``src`` viewed as ``shape`` (row-major), then transposed by ``perm``, materialised."""
    strides = row_major(shape)
    return emit_view(ctx, src, tuple(shape[p] for p in perm), tuple(strides[p] for p in perm),
                     out_shape=out_shape)


@lowers("Transpose")
def lower_transpose(ctx: NodeContext) -> list[int]:
    shape = ctx.shape(0)
    perm = ctx.attr("perm") or list(range(len(shape)))[::-1]
    perm = [p + len(shape) if p < 0 else p for p in perm]
    if sorted(perm) != list(range(len(shape))):
        raise ctx.fail(f"perm {perm} is not a permutation of rank {len(shape)}")
    return [permuted_view(ctx, ctx.inputs[0], shape, perm)]


@lowers("DepthToSpace")
def lower_depth_to_space(ctx: NodeContext) -> list[int]:
    n, ch, h, w = ctx.shape(0)
    b = int(ctx.attr("blocksize"))
    if ch % (b * b):
        raise ctx.fail(f"channels {ch} not divisible by blocksize² {b * b}")
    if ctx.attr("mode", "DCR") == "CRD":
        return [permuted_view(ctx, ctx.inputs[0], (n, ch // (b * b), b, b, h, w),
                              [0, 1, 4, 2, 5, 3], (n, ch // (b * b), h * b, w * b))]
    return [permuted_view(ctx, ctx.inputs[0], (n, b, b, ch // (b * b), h, w), [0, 3, 4, 1, 5, 2],
                          (n, ch // (b * b), h * b, w * b))]


@lowers("SpaceToDepth")
def lower_space_to_depth(ctx: NodeContext) -> list[int]:
    n, ch, h, w = ctx.shape(0)
    b = int(ctx.attr("blocksize"))
    if h % b or w % b:
        raise ctx.fail(f"spatial size {h}x{w} not divisible by blocksize {b}")
    perm = [0, 1, 3, 5, 2, 4] if ctx.attr("mode", "DCR") == "CRD" else [0, 3, 5, 1, 2, 4]
    return [permuted_view(ctx, ctx.inputs[0], (n, ch, h // b, b, w // b, b), perm,
                          (n, ch * b * b, h // b, w // b))]
