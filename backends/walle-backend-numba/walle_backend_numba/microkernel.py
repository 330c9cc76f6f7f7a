"""A register-tiled GEMM micro-kernel written in LLVM IR, for the GEMMs of Convs.

A Conv's GEMM is ``Y[M, N] = W[M, K] @ X[K, N]`` with W the weights and X the activations
(the input planes of a 1x1 Conv, the im2col columns otherwise). OpenBLAS packs both operands
on every call; at MobileNet's and SqueezeNet's sizes (K = 16..960, N = 49..12544) that packing
and its C-tile traffic cost it 20-40%. Here nothing is packed: each ``MR x NR`` tile of Y is
one call of a micro-kernel that keeps its ``MR * NV`` accumulators in vector registers over
the whole K loop; per k it loads ``NV`` vectors of one X row and broadcasts one weight from
each of the tile's ``MR`` rows of W (``MR`` sequential streams, which the prefetcher follows:
packing W into panels first measured no faster, hot or cold, and would have doubled the
weights' memory).

A last column tile of at most ``TAIL_DOTS`` columns is not a tile: a masked one-vector tile
still costs 8 FMAs a k, so a 7x7 plane's 49 = 48 + 1 pixels cost a third more than 48. Those
columns are dot products along K instead (``_tail_cols``: B's few columns copied contiguous,
each row of A against them, vectorised over K); 2048x512x49 538 -> 421 us hot, 854 -> 668 us
with the weights from memory. Where a task's rows of A outweigh B, a task sweeps each row
panel over all its column tiles before the next, so the weights stream from memory once.

The tile's epilogue (bias per row, the fused residual, a clamp for relu/clip) runs on the
accumulators before the one store, so the output is written once. The last column vector of
a tile narrower than ``NR`` is loaded and stored through a lane mask (no scratch copies); rows
past M are computed on row 0's weights and not stored.

numba has no vector types, so the micro-kernel is an ``@intrinsic`` that emits the IR itself;
it is compiled into the numba functions that call it and cached with them. The vector width is
16 lanes on AVX-512 machines and 8 otherwise (LLVM legalises either on any x86-64; the search
times these variants against the OpenBLAS ones, so a machine where they are slower does not
pick them).
"""

from __future__ import annotations

import os
from typing import Any

import llvmlite.ir as ir
import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

from walle_backend_numba.jit import dual


def _lanes() -> int:
    """16 on AVX-512 hosts, else 8; ``WALLE_MK_LANES`` (8 or 16) overrides (tests run the
    8-lane build on an AVX-512 machine this way)."""
    forced = os.environ.get("WALLE_MK_LANES", "")
    if forced in ("8", "16"):
        return int(forced)
    try:
        import llvmlite.binding as llvm

        features = llvm.get_host_cpu_features()
        return 16 if features.get("avx512f") else 8
    except Exception:  # pragma: no cover - a host llvmlite cannot describe
        return 8


W = _lanes()  #: float32 lanes of one vector
NV = 3 if W == 16 else 2  #: vectors across a tile (48 / 16 columns)
MR = 8  #: rows of a tile (rows of a weight panel)
NR = NV * W  #: columns of a tile


def declare(module: Any, name: str, ret: Any, params: list[Any]) -> Any:
    """The function ``name`` of ``module`` (an LLVM intrinsic), declared on first use."""
    fn = module.globals.get(name)
    return fn if fn is not None else ir.Function(module, ir.FunctionType(ret, params), name)


def splat(builder: Any, x: Any) -> Any:
    """A vector of W copies of the scalar ``x``."""
    i32 = ir.IntType(32)
    u = ir.Constant(ir.VectorType(x.type, W), ir.Undefined)
    s = builder.insert_element(u, x, ir.Constant(i32, 0))
    return builder.shuffle_vector(s, u, ir.Constant(ir.VectorType(i32, W), [0] * W))


def _tile(nv: int, with_res: bool, col_bias: bool = False, indirect: bool | str = False
          ) -> Any:
    """The micro-kernel for tiles of ``nv`` vectors (the last one masked to ``nr`` columns),
    with or without a residual input, the bias per row of C or (``col_bias``, a Linear
    layer's) per column. A is row-major, rows ``lda`` elements apart; ``indirect``: element
    (i, k) of A is at ``a + i * lda + off[k]``, ``off`` an int64 table passed last (an
    implicit-GEMM convolution reading its input windows in place: no im2col);
    ``indirect="b"``: row k of B is at ``b + off[k]`` instead (an NCHW implicit GEMM whose
    columns are output pixels: each k is a tap and channel of a padded, stride-split input)."""
    i64 = types.int64
    params = [i64] * 12 + [types.float32, types.float32] + ([i64] if indirect else [])
    sig = types.void(*params)

    def typer(*args: Any) -> Any:
        return sig, _codegen(nv, with_res, col_bias, indirect)

    if indirect:
        @intrinsic
        def tile_off(typingctx: Any, pa: Any, lda: Any, pb: Any, ldb: Any, pc: Any, ldc: Any,
                     kk: Any, mr: Any, nr: Any, pbias: Any, pr: Any, ldr: Any, lo: Any,
                     hi: Any, poff: Any) -> Any:
            return typer()

        return tile_off

    @intrinsic
    def tile(typingctx: Any, pa: Any, lda: Any, pb: Any, ldb: Any, pc: Any, ldc: Any,
             kk: Any, mr: Any, nr: Any, pbias: Any, pr: Any, ldr: Any, lo: Any,
             hi: Any) -> Any:
        return typer()

    return tile


def _codegen(nv: int, with_res: bool, col_bias: bool, indirect: bool | str) -> Any:
    """The LLVM IR of one :func:`_tile` variant."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        (pa, lda, pb, ldb, pc, ldc, kk, mr, nr, pbias, pr, ldr, lo, hi) = args[:14]
        f32, i32, i1 = ir.FloatType(), ir.IntType(32), ir.IntType(1)
        li64 = ir.IntType(64)
        vt = ir.VectorType(f32, W)
        mt = ir.VectorType(i1, W)
        fp, vp = f32.as_pointer(), vt.as_pointer()
        mod = builder.module
        fma = declare(mod, f"llvm.fma.v{W}f32", vt, [vt, vt, vt])
        mload = declare(mod, f"llvm.masked.load.v{W}f32.p0", vt, [vp, i32, mt, vt])
        mstore = declare(mod, f"llvm.masked.store.v{W}f32.p0", ir.VoidType(),
                         [vt, vp, i32, mt])
        zero = ir.Constant(vt, [0.0] * W)
        align = ir.Constant(i32, 4)

        # lanes of the last vector that are inside the tile: nr - (nv - 1) * W of them
        rem = builder.trunc(builder.sub(nr, ir.Constant(li64, (nv - 1) * W)), i32)
        iota = ir.Constant(ir.VectorType(i32, W), list(range(W)))
        mask = builder.icmp_signed("<", iota, splat(builder, rem))

        def vload(base: Any, v: int) -> Any:
            ptr = builder.bitcast(builder.gep(base, [ir.Constant(li64, v * W)]), vp)
            if v == nv - 1:
                return builder.call(mload, [ptr, align, mask, zero])
            return builder.load(ptr, align=4)

        def vstore(value: Any, base: Any, v: int) -> None:
            ptr = builder.bitcast(builder.gep(base, [ir.Constant(li64, v * W)]), vp)
            if v == nv - 1:
                builder.call(mstore, [value, ptr, align, mask])
            else:
                builder.store(value, ptr, align=4)

        a0 = builder.inttoptr(pa, fp)
        b0 = builder.inttoptr(pb, fp)
        c0 = builder.inttoptr(pc, fp)
        bias0 = builder.inttoptr(pbias, fp)
        r0 = builder.inttoptr(pr, fp)
        # row i of A at a0 + i * lda; rows past M (an edge tile) read row 0 instead, so
        # an unpadded A is never read past its end (their results are not stored)
        arows = [builder.select(builder.icmp_signed("<", ir.Constant(li64, i), mr),
                                builder.gep(a0, [builder.mul(ir.Constant(li64, i), lda)]),
                                a0) for i in range(MR)]
        pre = builder.block
        fn = builder.function
        loop = fn.append_basic_block("tile.k")
        done = fn.append_basic_block("tile.store")
        builder.branch(loop)
        builder.position_at_end(loop)
        k = builder.phi(li64)
        k.add_incoming(ir.Constant(li64, 0), pre)
        accs = [[builder.phi(vt) for _ in range(nv)] for _ in range(MR)]
        for row in accs:
            for p in row:
                p.add_incoming(zero, pre)
        new = []
        if indirect == "b":
            offs = builder.inttoptr(args[14], li64.as_pointer())
            brow = builder.gep(b0, [builder.load(builder.gep(offs, [k]), align=8)])
        else:
            brow = builder.gep(b0, [builder.mul(k, ldb)])
        bv = [vload(brow, v) for v in range(nv)]
        if indirect == "b":
            ka = k
        elif indirect:
            offs = builder.inttoptr(args[14], li64.as_pointer())
            ka = builder.load(builder.gep(offs, [k]), align=8)
        else:
            ka = k
        for i in range(MR):
            a = builder.load(builder.gep(arows[i], [ka]), align=4)
            s = splat(builder, a)
            new.append([builder.call(fma, [s, bv[v], accs[i][v]]) for v in range(nv)])
        k1 = builder.add(k, ir.Constant(li64, 1))
        k.add_incoming(k1, loop)
        for i in range(MR):
            for v in range(nv):
                accs[i][v].add_incoming(new[i][v], loop)
        builder.cbranch(builder.icmp_signed("<", k1, kk), loop, done)
        builder.position_at_end(done)
        vlo, vhi = splat(builder, lo), splat(builder, hi)
        bcols = [vload(bias0, v) for v in range(nv)] if col_bias else []
        for i in range(MR):
            with builder.if_then(builder.icmp_signed("<", ir.Constant(li64, i), mr)):
                if not col_bias:
                    bi = builder.load(builder.gep(bias0, [ir.Constant(li64, i)]), align=4)
                    brow = splat(builder, bi)
                crow = builder.gep(c0, [builder.mul(ir.Constant(li64, i), ldc)])
                rrow = builder.gep(r0, [builder.mul(ir.Constant(li64, i), ldr)])
                for v in range(nv):
                    y = builder.fadd(new[i][v], bcols[v] if col_bias else brow)
                    if with_res:
                        y = builder.fadd(y, vload(rrow, v))
                    # NaN stays NaN (as bias_act_rows: lo if v < lo, hi if v > hi)
                    y = builder.select(builder.fcmp_ordered("<", y, vlo), vlo, y)
                    y = builder.select(builder.fcmp_ordered(">", y, vhi), vhi, y)
                    vstore(y, crow, v)
        return context.get_dummy_value()

    return codegen


_T1, _T2, _T3 = _tile(1, False), _tile(2, False), _tile(3, False)
_R1, _R2, _R3 = _tile(1, True), _tile(2, True), _tile(3, True)
_C1, _C2, _C3 = _tile(1, False, True), _tile(2, False, True), _tile(3, False, True)
_CR1, _CR2, _CR3 = _tile(1, True, True), _tile(2, True, True), _tile(3, True, True)


@numba.njit(cache=True, inline="always")
def _one(pa: int, lda: int, k: int, pb: int, ldb: int, pc: int, ldc: int, m: int, n: int,
         mb: int, n0: int, pbias: int, col_bias: bool, pr: int, ldr: int, lo: Any,
         hi: Any) -> None:  # pragma: no cover
    """Tile (row panel ``mb``, columns from ``n0``) of C = A @ B."""
    m0 = mb * MR
    nr = min(NR, n - n0)
    a = pa + 4 * m0 * lda
    b = pb + 4 * n0
    c = pc + 4 * (m0 * ldc + n0)
    bb = pbias + 4 * m0
    mr = min(MR, m - m0)
    if col_bias and pr != 0:  # channels-last Convs: bias per column and the residual
        bc = pbias + 4 * n0
        r = pr + 4 * (m0 * ldr + n0)
        if nr > 2 * W:
            _CR3(a, lda, b, ldb, c, ldc, k, mr, nr, bc, r, ldr, lo, hi)
        elif nr > W:
            _CR2(a, lda, b, ldb, c, ldc, k, mr, nr, bc, r, ldr, lo, hi)
        else:
            _CR1(a, lda, b, ldb, c, ldc, k, mr, nr, bc, r, ldr, lo, hi)
    elif col_bias:
        bc = pbias + 4 * n0
        if nr > 2 * W:
            _C3(a, lda, b, ldb, c, ldc, k, mr, nr, bc, 0, 0, lo, hi)
        elif nr > W:
            _C2(a, lda, b, ldb, c, ldc, k, mr, nr, bc, 0, 0, lo, hi)
        else:
            _C1(a, lda, b, ldb, c, ldc, k, mr, nr, bc, 0, 0, lo, hi)
    elif pr != 0:
        r = pr + 4 * (m0 * ldr + n0)
        if nr > 2 * W:
            _R3(a, lda, b, ldb, c, ldc, k, mr, nr, bb, r, ldr, lo, hi)
        elif nr > W:
            _R2(a, lda, b, ldb, c, ldc, k, mr, nr, bb, r, ldr, lo, hi)
        else:
            _R1(a, lda, b, ldb, c, ldc, k, mr, nr, bb, r, ldr, lo, hi)
    elif nr > 2 * W:
        _T3(a, lda, b, ldb, c, ldc, k, mr, nr, bb, 0, 0, lo, hi)
    elif nr > W:
        _T2(a, lda, b, ldb, c, ldc, k, mr, nr, bb, 0, 0, lo, hi)
    else:
        _T1(a, lda, b, ldb, c, ldc, k, mr, nr, bb, 0, 0, lo, hi)


def _f32ptr_typer(typingctx: Any, addr: Any) -> Any:
    """The float32 pointer at byte address ``addr`` (for ``numba.carray``)."""
    sig = types.CPointer(types.float32)(types.int64)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.inttoptr(args[0], ir.FloatType().as_pointer())

    return sig, codegen


_f32ptr: Any = intrinsic(_f32ptr_typer)


#: A last column tile at most this wide is computed as dot products (:func:`_tail_cols`)
#: instead of a masked tile: a masked one-vector tile costs 8 FMAs a k for its columns
#: (ResNet-50's 7x7 planes are 49 = 48 + 1 columns: a third more work than 48 alone).
TAIL_DOTS = 4


@numba.njit(cache=True, fastmath={"reassoc", "contract"}, error_model="numpy")
def _tail_cols(pa: int, lda: int, pb: int, ldb: int, pc: int, ldc: int, m0: int, m1: int,
               n0: int, r: int, k: int, pbias: int, col_bias: bool, pr: int, ldr: int,
               lo: Any, hi: Any) -> None:  # pragma: no cover
    """Columns [n0, n0 + r) of rows [m0, m1) of C (``pb``: B's column n0) as dot products
    along K: B's r columns copied contiguous once, then each row of A against each,
    vectorised over K (the sums reassociated, as the tiles' are)."""
    bt = np.empty((r, k), np.float32)
    b2 = numba.carray(_f32ptr(pb), (k, ldb))  # pb: B's column n0
    for kk in range(k):
        for j in range(r):
            bt[j, kk] = b2[kk, j]
    bias = numba.carray(_f32ptr(pbias), (n0 + r if col_bias else m1,))
    for i in range(m0, m1):
        arow = numba.carray(_f32ptr(pa + 4 * i * lda), (k,))
        crow = numba.carray(_f32ptr(pc + 4 * i * ldc), (n0 + r,))
        # the residual's row (C's own where there is none: not read)
        rrow = numba.carray(_f32ptr(pr + 4 * i * ldr if pr != 0 else pc + 4 * i * ldc),
                            (n0 + r,))
        for j in range(r):
            acc = np.float32(0)
            for kk in range(k):
                acc += arow[kk] * bt[j, kk]
            v = acc + (bias[n0 + j] if col_bias else bias[i])
            if pr != 0:
                v += rrow[n0 + j]
            if v < lo:
                v = lo
            elif v > hi:
                v = hi
            crow[n0 + j] = v


@numba.njit(cache=True, inline="always")
def _by_rows(m: int, n: int, k: int, col_bias: bool, chunks: int) -> bool:  # pragma: no cover
    """Whether :func:`gemm`'s tasks take row panels of C (else column tiles)."""
    nmb = (m + MR - 1) // MR
    npan = (n + NR - 1) // NR
    # by row panels each task reads all of B: when B is far larger than A (N >= 32 M) and
    # deep enough to matter (K >= 64) the tasks take column tiles instead, each reading its
    # share of B once (64x144x3025 235 -> 189 us, 64x256x3136 433 -> 354; with K < 64 the
    # row split stayed faster: 64x27x12321 174 vs 208)
    # with the bias per column B is the weights (a channels-last 1x1 Conv, a Linear layer):
    # far more output channels than pixels (MobileNetV2's 7x7 layers: 49 x 960..1280) split
    # by columns too, each core reading half the weights (219 -> 187 us; at n <= 8 m no gain)
    # an NCHW Conv's columns are pixels: split by them when there are enough tiles (>= 4 a
    # task), so each core reads only its pixels of the input, which it mostly wrote itself
    # when the op before split by pixels too (this split, Winograd's and im2col_mk's tile
    # rows, direct_mk's output rows); split by output channels, both cores read the whole
    # input, half of it from the other core's cache. Timed right after the 1x1 Conv that
    # produced its input: 256->128->32 at 27x27 67 -> 38 us, 64->256->64 at 56x56 755 ->
    # 455 us; alone (hot) within 7% either way. At 14x14 and below rows stay better
    # (balance: 5 tiles or fewer). SqueezeNet 4.09 -> 3.87 ms, ResNet-50 40.3 -> 38.8.
    pixels = not col_bias and npan >= 4 * chunks
    return nmb >= 2 * chunks and not pixels and not (n >= 32 * m and k >= 64) and \
        not (col_bias and n > 8 * m)


@numba.njit(cache=True, inline="always")
def _task(t: int, chunks: int, by_rows: bool, pa: int, lda: int, pb: int, ldb: int, skew: int,
          pc: int, ldc: int, m: int, n: int, k: int, pbias: int, col_bias: bool, pr: int,
          ldr: int, lo: Any, hi: Any) -> None:  # pragma: no cover
    """Task ``t``'s tiles of C = A @ B: its row panels or its column tiles; column panel p's
    B is read from ``pb + 4 * p * skew`` on (0: B as it is)."""
    nmb = (m + MR - 1) // MR
    npan = (n + NR - 1) // NR
    n0 = (npan - 1) * NR
    dots = npan > 1 and n - n0 <= TAIL_DOTS
    full = npan - 1 if dots else npan  # column tiles through the micro-kernel
    if by_rows:
        mb0, mb1 = t * nmb // chunks, (t + 1) * nmb // chunks
    else:
        mb0, mb1 = 0, nmb
    if by_rows and m > n * chunks:
        # a task's rows of A outweigh B: each row panel over all column tiles, so A streams
        # once (weights from memory: 2048x512x49 854 -> 792 us, 1000x512x169 707 -> 659;
        # where B is the larger, sweeping it per row panel lost: 128x512x784 459 -> 573)
        for mb in range(mb0, mb1):
            for p in range(full):
                _one(pa, lda, k, pb + 4 * p * skew, ldb, pc, ldc, m, n, mb, p * NR, pbias,
                     col_bias, pr, ldr, lo, hi)
    elif by_rows:
        for p in range(full):
            for mb in range(mb0, mb1):
                _one(pa, lda, k, pb + 4 * p * skew, ldb, pc, ldc, m, n, mb, p * NR, pbias,
                     col_bias, pr, ldr, lo, hi)
    else:
        p1 = (t + 1) * npan // chunks
        for p in range(t * npan // chunks, min(p1, full)):
            for mb in range(mb0, mb1):
                _one(pa, lda, k, pb + 4 * p * skew, ldb, pc, ldc, m, n, mb, p * NR, pbias,
                     col_bias, pr, ldr, lo, hi)
        if p1 != npan:  # the tail columns are the last task's
            dots = False
    if dots and mb0 < mb1:
        # column n0 of B: n0 floats into the last panel (B packed: panel p at pb + 4 * p *
        # (skew + NR))
        _tail_cols(pa, lda, pb + 4 * ((npan - 1) * skew + n0), ldb, pc, ldc,
                   mb0 * MR, min(m, mb1 * MR), n0, n - n0, k, pbias, col_bias, pr, ldr, lo,
                   hi)


@dual()
def gemm(pa: int, lda: int, pb: int, ldb: int, pc: int, ldc: int, m: int, n: int, k: int,
         pbias: int, col_bias: bool, pr: int, ldr: int, lo: Any, hi: Any,
         chunks: int) -> None:  # pragma: no cover
    """C[m, n] = clamp(A @ B + bias[row] (+ R), lo, hi), all float32 row-major (addresses in
    bytes, leading dimensions in elements; ``pr`` 0: no residual); with ``col_bias`` the bias
    is bias[column] (a Linear layer's, a channels-last Conv's), with or without residual.
    The tiles go to ``chunks`` pool tasks: by row panels when there are enough of them (each
    task's rows of A then stay in its cache over all column tiles) and B is not far the
    larger operand, else by column tiles."""
    by_rows = _by_rows(m, n, k, col_bias, chunks)
    for t in numba.prange(chunks):
        _task(t, chunks, by_rows, pa, lda, pb, ldb, 0, pc, ldc, m, n, k, pbias, col_bias, pr,
              ldr, lo, hi)


@dual()
def gemm_batched(pa: int, sa: int, lda: int, pb: int, sb: int, ldb: int, pc: int, sc: int,
                 ldc: int, m: int, n: int, k: int, pbias: int, sbias: int, pr: int,
                 lo: Any, hi: Any, chunks: int, batch: int) -> None:  # pragma: no cover
    """``batch`` independent :func:`gemm` calls (bias per row, the residual at C's offsets
    from ``pr``) in one launch: GEMM ``i`` reads A, B, C and the bias at ``i * sa`` (``sb``,
    ``sc``, ``sbias``) bytes from the first. A grouped 1x1 Conv's groups: a launch each cost
    ~3 us apiece on the 2-core VM, and ShuffleNet has 40 of them a run."""
    by_rows = _by_rows(m, n, k, False, chunks)
    for t in numba.prange(chunks):
        for i in range(batch):
            _task(t, chunks, by_rows, pa + i * sa, lda, pb + i * sb, ldb, 0, pc + i * sc, ldc,
                  m, n, k, pbias + i * sbias, False, pr + i * sc if pr != 0 else 0, ldc, lo,
                  hi)


@dual()
def gemm_packed(pa: int, lda: int, pbp: int, pc: int, ldc: int, m: int, n: int, k: int,
                pbias: int, col_bias: bool, pr: int, ldr: int, lo: Any, hi: Any,
                chunks: int) -> None:  # pragma: no cover
    """:func:`gemm` with B packed in column panels (:func:`pack_panels`: ``[N/NR][K][NR]``,
    each tile's B one contiguous stream instead of K rows N apart), split the same way."""
    by_rows = _by_rows(m, n, k, col_bias, chunks)
    for t in numba.prange(chunks):
        # _one reads a tile's B at pb + 4 * n0; panel p starts p * NR * k floats in
        _task(t, chunks, by_rows, pa, lda, pbp, NR, NR * (k - 1), pc, ldc, m, n, k, pbias,
              col_bias, pr, ldr, lo, hi)


def panels_bytes(k: int, n: int) -> int:
    """Bytes of :func:`pack_panels`' copy of a B of ``[k, n]``."""
    return -(-n // NR) * k * NR * 4


def pack_panels(b: np.ndarray) -> np.ndarray:
    """B [K, N] as ``[ceil(N / NR), K, NR]`` float32, the last panel zero-padded."""
    k, n = b.shape
    npan = -(-n // NR)
    out = np.zeros((npan, k, NR), np.float32)
    for p in range(npan):
        part = b[:, p * NR:(p + 1) * NR]
        out[p, :, :part.shape[1]] = part
    return out


def clamp_bounds(act: int, lo: float, hi: float) -> tuple[np.float32, np.float32]:
    """The tile's clamp for a fused activation (``matmul.ACTS`` codes 0 none, 1 relu, 2 clip;
    others are applied after the GEMM, so no clamp)."""
    inf = np.float32(np.inf)
    if act == 1:
        return np.float32(0), inf
    if act == 2:
        return np.float32(lo), np.float32(hi)
    return -inf, inf
