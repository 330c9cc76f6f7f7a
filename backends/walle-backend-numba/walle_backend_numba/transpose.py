"""A register transpose of one ``W x W`` float32 tile, written in LLVM IR: NCHW <-> NHWC.

Winograd's transforms work channels last and the model is NCHW, so each Winograd Conv turns its
input into channels-last tiles and its output back. Written as loops, numba made both a scalar
gather or scatter: one element a cycle at best, since every element sits in a different cache
line from its neighbour in the other layout. Profiled in the model, that store was most of the
output transform (ResNet-18: 1.6 ms of 15.8, SqueezeNet: 0.65 of 4.1).

Here a tile is ``W`` vector loads (``W`` = 16 lanes on AVX-512, 8 otherwise), a log2(W)-stage
exchange of half-blocks between pairs of rows (``shufflevector``: LLVM emits the permutes), and
``W`` vector stores, with the tile's edges handled by lane masks. The output side applies the
Conv's epilogue (bias per channel, the residual, the relu/clip clamp) to the transposed vectors
before the store, so the output is still written once.
"""

from __future__ import annotations

from typing import Any

import llvmlite.ir as ir
from numba import types
from numba.extending import intrinsic

from walle_backend_numba.microkernel import W, declare, splat


def _tile(with_bias: bool, with_res: bool, clamp: bool) -> Any:
    """``tile(src, lds, dst, ldd, nr, nc, bias, res, ldr, lo, hi)``: for i < nr, j < nc,
    ``dst[j * ldd + i] = clamp(src[i * lds + j] (+ bias[j]) (+ res[j * ldr + i]), lo, hi)``;
    addresses in bytes, strides in elements, ``nr, nc <= W``."""
    i64 = types.int64
    sig = types.void(i64, i64, i64, i64, i64, i64, i64, i64, i64, types.float32, types.float32)

    @intrinsic
    def tile(typingctx: Any, src: Any, lds: Any, dst: Any, ldd: Any, nr: Any, nc: Any,
             bias: Any, res: Any, ldr: Any, lo: Any, hi: Any) -> Any:
        return sig, _codegen(with_bias, with_res, clamp)

    return tile


def _codegen(with_bias: bool, with_res: bool, clamp: bool) -> Any:
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        src, lds, dst, ldd, nr, nc, pbias, pres, ldr, lo, hi = args
        f32, i32, i1, i64 = ir.FloatType(), ir.IntType(32), ir.IntType(1), ir.IntType(64)
        vt, mt = ir.VectorType(f32, W), ir.VectorType(i1, W)
        fp, vp = f32.as_pointer(), vt.as_pointer()
        mod = builder.module
        mload = declare(mod, f"llvm.masked.load.v{W}f32.p0", vt, [vp, i32, mt, vt])
        mstore = declare(mod, f"llvm.masked.store.v{W}f32.p0", ir.VoidType(),
                         [vt, vp, i32, mt])
        zero = ir.Constant(vt, [0.0] * W)
        align = ir.Constant(i32, 4)
        iota = ir.Constant(ir.VectorType(i32, W), list(range(W)))

        def lanes_below(n: Any) -> Any:
            return builder.icmp_signed("<", iota, splat(builder, builder.trunc(n, i32)))

        cols, rows = lanes_below(nc), lanes_below(nr)
        s0, d0 = builder.inttoptr(src, fp), builder.inttoptr(dst, fp)
        # rows past nr read row 0 (in bounds; their lanes land past nr and are not stored)
        vecs = []
        for i in range(W):
            inside = builder.icmp_signed("<", ir.Constant(i64, i), nr)
            at = builder.select(inside, builder.gep(s0, [builder.mul(ir.Constant(i64, i), lds)]),
                                s0)
            vecs.append(builder.call(mload, [builder.bitcast(at, vp), align, cols, zero]))
        # exchange b x b blocks between rows i and i + b, b = W/2 .. 1: a transpose
        b = W // 2
        while b:
            low = [lane if not lane & b else W + lane - b for lane in range(W)]
            high = [lane + b if not lane & b else W + lane for lane in range(W)]
            for i in range(W):
                if i & b:
                    continue
                x, y = vecs[i], vecs[i + b]
                vecs[i] = builder.shuffle_vector(x, y, ir.Constant(ir.VectorType(i32, W), low))
                vecs[i + b] = builder.shuffle_vector(x, y,
                                                     ir.Constant(ir.VectorType(i32, W), high))
            b //= 2
        bias0 = builder.inttoptr(pbias, fp)
        r0 = builder.inttoptr(pres, fp)
        vlo, vhi = splat(builder, lo), splat(builder, hi)
        for j in range(W):
            jj = ir.Constant(i64, j)
            with builder.if_then(builder.icmp_signed("<", jj, nc)):
                v = vecs[j]
                if with_bias:
                    bj = builder.load(builder.gep(bias0, [jj]), align=4)
                    v = builder.fadd(v, splat(builder, bj))
                if with_res:
                    at = builder.bitcast(builder.gep(r0, [builder.mul(jj, ldr)]), vp)
                    v = builder.fadd(v, builder.call(mload, [at, align, rows, zero]))
                if clamp:  # NaN stays NaN, as the tile kernels' clamp
                    v = builder.select(builder.fcmp_ordered("<", v, vlo), vlo, v)
                    v = builder.select(builder.fcmp_ordered(">", v, vhi), vhi, v)
                at = builder.bitcast(builder.gep(d0, [builder.mul(jj, ldd)]), vp)
                builder.call(mstore, [v, at, align, rows])
        return context.get_dummy_value()

    return codegen


#: plain transpose (the channels-last packing of a Winograd input)
plain = _tile(False, False, False)
#: bias and clamp, with or without the residual (a Winograd output back to NCHW)
epilogue = _tile(True, False, True)
epilogue_res = _tile(True, True, True)
