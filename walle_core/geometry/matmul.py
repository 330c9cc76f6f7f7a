"""MatMul and Gemm onto the batched MatMul primitive.

MatMul: ``out[b, m, n] = sum_k A[b, m, k] B[b, k, n]`` with numpy broadcasting of the batch dims:
a 1-D operand gains a unit dim that is dropped again; unequal batch dims are expanded by a
stride-0 raster unless one side is plain 2-D. Gemm: ``Y = alpha * op(A) @ op(B) + beta * C`` is
one MatMul with transposes and a bias epilogue.
"""

from __future__ import annotations

from walle_core.geometry.common import broadcast_shape, expand_to
from walle_core.geometry.context import NodeContext, lowers
from walle_core.geometry.reshape import relabel
from walle_core.ir.primitives import MatMul


@lowers("MatMul")
def lower_matmul(ctx: NodeContext) -> list[int]:
    a, b = ctx.inputs[0], ctx.inputs[1]
    sa, sb = ctx.shape(0), ctx.shape(1)
    if not sa or not sb:
        raise ctx.fail("MatMul operands must have rank >= 1")
    if len(sa) == 1:
        a, sa = relabel(ctx, a, (1, sa[0])), (1, sa[0])
    if len(sb) == 1:
        b, sb = relabel(ctx, b, (sb[0], 1)), (sb[0], 1)
    if sa[-1] != sb[-2]:
        raise ctx.fail(f"inner dims differ: {ctx.shape(0)} @ {ctx.shape(1)}")
    batch = broadcast_shape(ctx, sa[:-2], sb[:-2])
    if sa[:-2] != batch and not (len(sa) == 2 and sb[:-2] == batch):
        a = expand_to(ctx, a, batch + sa[-2:])
    if sb[:-2] != batch and not (len(sb) == 2 and ctx.builder.slots[a].shape[:-2] == batch):
        b = expand_to(ctx, b, batch + sb[-2:])
    out = ctx.out(batch + (sa[-2], sb[-1]), ctx.dtype(0))
    ctx.emit(MatMul(), [a, b, -1], [out])
    final = batch + (() if len(ctx.shape(0)) == 1 else (sa[-2],)) + (
        () if len(ctx.shape(1)) == 1 else (sb[-1],))
    return [out if final == ctx.builder.slots[out].shape else relabel(ctx, out, final)]


@lowers("Gemm")
def lower_gemm(ctx: NodeContext) -> list[int]:
    ta, tb = bool(ctx.attr("transA", 0)), bool(ctx.attr("transB", 0))
    sa, sb = ctx.shape(0), ctx.shape(1)
    m, k = (sa[1], sa[0]) if ta else sa
    k2, n = (sb[1], sb[0]) if tb else sb
    if k != k2:
        raise ctx.fail(f"inner dims differ: {sa} (transA={ta}) @ {sb} (transB={tb})")
    bias = ctx.inputs[2] if ctx.has(2) else -1
    if bias >= 0:
        broadcast_shape(ctx, ctx.shape(2), (m, n))
    out = ctx.out((m, n), ctx.dtype(0))
    prim = MatMul(ta, tb, float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0)))
    ctx.emit(prim, [ctx.inputs[0], ctx.inputs[1], bias], [out])
    return [out]


