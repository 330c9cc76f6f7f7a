"""GEMMs on numba's thread pool: one pool for every kernel of a plan.

With BLAS multi-threaded, OpenBLAS's worker threads busy-wait between GEMMs. On a 2-core machine
the second core is then taken by a spinning BLAS thread for the whole run (a serial MobileNetV2
run used 2.0 CPU-seconds per second), so numba's own parallel kernels (depthwise, pooling,
im2col, epilogues, Winograd transforms) had no core to run on and were kept serial.

Here BLAS runs single-threaded and the GEMM is split across numba's pool instead: each worker
calls OpenBLAS's ``cblas_sgemm`` on its block of rows or columns of the output. Measured
against OpenBLAS's own 2 threads (2-core VM): 64x576x3136 1094 vs 1121 us, 128x1152x784 929 vs
907 us, 96x16x12544 245 vs 241 us, 960x160x49 72 vs 73 us (M split). Every kernel of a plan
now runs on the same threads, so the numba kernels can be parallel too.

The sgemm is bound by symbol name (``llvmlite.binding.add_symbol``) rather than as a ctypes
pointer, so the kernels stay in numba's on-disk cache. Only numpy's own OpenBLAS (the
``scipy_openblas`` build numpy's wheels ship, 64-bit integers) is bound; with any other BLAS
:func:`available` is False and GEMMs stay with ``np.matmul``.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
from numba import types

from walle_backend_numba.jit import dual

_SYMBOLS = {"walle_cblas_sgemm": ("scipy_cblas_sgemm64_", "cblas_sgemm64_"),
            "walle_cblas_sgemv": ("scipy_cblas_sgemv64_", "cblas_sgemv64_")}
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def _blas_library() -> str | None:
    """Path of the BLAS library numpy loaded, when threadpoolctl can tell."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    for pool in threadpool_info():
        if pool.get("user_api") == "blas" and pool.get("internal_api") == "openblas":
            return str(pool["filepath"])
    return None


def _bind() -> bool:
    if os.environ.get("WALLE_POOL_GEMM", "1") in ("0", "false", "no"):
        return False
    path = _blas_library()
    if path is None:
        return False
    try:
        lib = ctypes.CDLL(path)
    except OSError:  # pragma: no cover - the library numpy itself loaded
        return False
    found = {}
    for symbol, names in _SYMBOLS.items():
        fn = next((getattr(lib, n) for n in names if hasattr(lib, n)), None)
        if fn is None:
            return False
        found[symbol] = ctypes.cast(fn, ctypes.c_void_p).value
    import llvmlite.binding as llvm

    for symbol, address in found.items():
        llvm.add_symbol(symbol, address)
    return True


_AVAILABLE = _bind()

# cblas_sgemm(order, transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) with 64-bit
# integers; pointers are passed as 64-bit integers (the same registers and stack slots).
sgemm = types.ExternalFunction("walle_cblas_sgemm", types.void(
    types.int32, types.int32, types.int32, types.int64, types.int64, types.int64,
    types.float32, types.int64, types.int64, types.int64, types.int64, types.float32,
    types.int64, types.int64))
# cblas_sgemv(order, trans, M, N, alpha, A, lda, X, incX, beta, Y, incY)
_sgemv = types.ExternalFunction("walle_cblas_sgemv", types.void(
    types.int32, types.int32, types.int64, types.int64, types.float32, types.int64,
    types.int64, types.int64, types.int64, types.float32, types.int64, types.int64))


def available() -> bool:
    """Whether GEMMs can run on numba's pool (numpy's OpenBLAS was bound)."""
    return _AVAILABLE


@numba.njit(cache=True, fastmath={"contract"}, error_model="numpy")
def bias_act_rows(y: Any, r0: int, r1: int, c0: int, c1: int, bias: Any, has_bias: bool,
                  res: Any, has_res: bool, act: int, lo: Any, hi: Any,
                  m: int) -> None:  # pragma: no cover - compiled
    """In place on y[r0:r1, c0:c1]: y = act(y + bias[r % m] + res) (a Conv's bias, fused
    residual and activation: 0 none, 1 relu, 2 clip, 3 sigmoid, 4 tanh). Branches are taken
    per row, so each inner loop is one vectorisable pass."""
    zero = lo - lo
    one = zero + 1
    n = c1 - c0
    b0 = max(c0, 0)
    for r in range(r0, r1):
        b = bias[r % m] if has_bias else zero
        if has_res:
            for c in range(n):
                y[r, b0 + c] = y[r, b0 + c] + b + res[r, b0 + c]
            b = zero
        if act == 0:
            if has_bias and not has_res:
                for c in range(n):
                    y[r, b0 + c] = y[r, b0 + c] + b
        elif act == 1:
            for c in range(n):
                v = y[r, b0 + c] + b
                y[r, b0 + c] = v if not (v < 0) else zero
        elif act == 2:
            for c in range(n):
                v = y[r, b0 + c] + b
                y[r, b0 + c] = lo if v < lo else (hi if v > hi else v)
        elif act == 3:
            for c in range(n):
                y[r, b0 + c] = one / (one + np.exp(-(y[r, b0 + c] + b)))
        else:
            for c in range(n):
                y[r, b0 + c] = np.tanh(y[r, b0 + c] + b)


@dual()
def bias_act(y: Any, bias: Any, has_bias: bool, res: Any, act: int, lo: Any, hi: Any,
             m: int) -> None:  # pragma: no cover - compiled
    """In place on y [rows, n] (rows are batch*M): y = act(y + bias[r % m] + res), the rows in
    chunks on the pool, each a call of :func:`bias_act_rows` (the epilogue of a Conv whose GEMM
    did not apply it, and of a depthwise Conv with a fused residual)."""
    rows, n = y.shape
    nchunk = min(rows, 16)
    for t in numba.prange(nchunk):
        bias_act_rows(y, t * rows // nchunk, (t + 1) * rows // nchunk, 0, n, bias, has_bias,
                      res, True, act, lo, hi, m)


@dual()
def gemm_blocks(pa: int, pb: int, pc: int, batch: int, sa: int, sb: int, sc: int, m: int,
                n: int, k: int, ta: int, tb: int, lda: int, ldb: int, ldc: int, split_m: int,
                split_n: int, y: Any, bias: Any, has_bias: bool, res: Any, has_res: bool,
                act: int, lo: Any, hi: Any) -> None:  # pragma: no cover - compiled
    """C[i] = op(A[i]) @ op(B[i]) for i < batch (float32, row-major; pointers in bytes, batch
    strides in elements), as ``batch * split_m * split_n`` single-threaded sgemm calls on
    disjoint blocks of C, spread over the pool. With a bias, residual or activation each
    block then goes through :func:`bias_act_rows` while it is still in the worker's cache
    (``y`` is C as [batch*m, n], ``res`` likewise): no second pass over the output."""
    bm = (m + split_m - 1) // split_m
    bn = (n + split_n - 1) // split_n
    bn = (bn + 15) // 16 * 16  # whole vector widths per block
    per = split_m * split_n
    epi = has_bias or has_res or act != 0
    for t in numba.prange(batch * per):
        i = t // per
        r = (t % per) // split_n
        s = t % split_n
        m0 = r * bm
        n0 = s * bn
        mm = min(m, m0 + bm) - m0
        nn = min(n, n0 + bn) - n0
        if mm <= 0 or nn <= 0:
            continue
        a = pa + 4 * (i * sa + (m0 * lda if ta == 0 else m0))
        b = pb + 4 * (i * sb + (n0 if tb == 0 else n0 * ldb))
        c = pc + 4 * (i * sc + m0 * ldc + n0)
        sgemm(ROW_MAJOR, TRANS if ta else NO_TRANS, TRANS if tb else NO_TRANS, mm, nn, k,
               np.float32(1.0), a, lda, b, ldb, np.float32(0.0), c, ldc)
        if epi:
            bias_act_rows(y, i * m + m0, i * m + m0 + mm, n0, n0 + nn, bias, has_bias, res,
                          has_res, act, lo, hi, m)


@dual()
def gemv_blocks(pa: int, pv: int, py: int, batch: int, sa: int, sv: int, sy: int, rows: int,
                k: int, trans: int, lda: int, incv: int, split: int) -> None:  # pragma: no cover
    """y[i] = op(A[i]) @ v[i] for i < batch, ``op(A)`` [rows, k] (``trans``: A is stored
    [k, rows]); the rows of y in ``split`` blocks that start at multiples of 16, one
    single-threaded sgemv each, spread over the pool.

    Callers split only untransposed A: there each output is one dot product and a block gives
    bit for bit what one sgemv over all rows gives (numpy's matrix-vector path, the reference;
    224 of 224 shapes checked), while OpenBLAS's transposed kernel rounds differently for
    short blocks."""
    bm = (rows + split - 1) // split
    bm = (bm + 15) // 16 * 16
    for t in numba.prange(batch * split):
        i = t // split
        r0 = (t % split) * bm
        mm = min(rows, r0 + bm) - r0
        if mm <= 0:
            continue
        y = py + 4 * (i * sy + r0)
        v = pv + 4 * i * sv
        if trans == 0:
            _sgemv(ROW_MAJOR, NO_TRANS, mm, k, np.float32(1.0), pa + 4 * (i * sa + r0 * lda),
                   lda, v, incv, np.float32(0.0), y, 1)
        else:
            _sgemv(ROW_MAJOR, TRANS, k, mm, np.float32(1.0), pa + 4 * (i * sa + r0), lda, v,
                   incv, np.float32(0.0), y, 1)


def _operand(x: np.ndarray) -> tuple[int, int, int] | None:
    """(transposed, leading dimension, batch stride in elements) of a float32 operand whose
    last two axes are row-major or column-major and whose batch axes are one uniform stride;
    None otherwise."""
    if x.dtype != np.float32 or x.ndim < 2:
        return None
    s0, s1 = x.strides[-2], x.strides[-1]
    rows, cols = x.shape[-2], x.shape[-1]
    if s1 == 4 and (s0 == 4 * cols or rows == 1) and s0 >= 4:
        trans, ld = 0, max(s0 // 4, cols, 1)
    elif s0 == 4 and (s1 == 4 * rows or cols == 1) and s1 >= 4:
        trans, ld = 1, max(s1 // 4, rows, 1)
    else:
        return None
    batch = int(np.prod(x.shape[:-2])) if x.ndim > 2 else 1
    if batch == 1:
        return trans, ld, 0
    # the batch axes must collapse into one stride
    bs = x.strides[:-2]
    bshape = x.shape[:-2]
    stride = None
    expect = None
    for size, st in zip(reversed(bshape), reversed(bs), strict=True):
        if size == 1:
            continue
        if stride is None:
            stride, expect = st, st * size
        elif st != expect:
            return None
        else:
            expect = st * size
    if stride is None or stride % 4:
        return None
    return trans, ld, stride // 4


_ZERO = np.float32(0)
_DUMMY1 = np.zeros(1, np.float32)
_DUMMY2 = np.zeros((1, 1), np.float32)


def _strip(dims: tuple[int, ...]) -> tuple[int, ...]:
    """Batch dims without leading ones (broadcasting aligns them on the right)."""
    i = 0
    while i < len(dims) and dims[i] == 1:
        i += 1
    return tuple(dims[i:])


class Gemm:
    """``out = a @ b`` on the pool, planned once for fixed shapes; falls back to
    ``np.matmul`` for what cblas cannot take as it is (broadcast batches, odd strides,
    float64)."""

    def __init__(self, a_shape: tuple[int, ...], b_shape: tuple[int, ...], threads: int) -> None:
        m, k = a_shape[-2], a_shape[-1]
        n = b_shape[-1]
        self.m, self.n, self.k = m, n, k
        batch_a = int(np.prod(a_shape[:-2])) if len(a_shape) > 2 else 1
        batch_b = int(np.prod(b_shape[:-2])) if len(b_shape) > 2 else 1
        self.batch = max(batch_a, batch_b)
        self.bcast_a = batch_a == 1 and self.batch > 1
        self.bcast_b = batch_b == 1 and self.batch > 1
        lead_a, lead_b = _strip(a_shape[:-2]), _strip(b_shape[:-2])
        same = lead_a == lead_b or lead_a == () or lead_b == ()
        # (a dot product, m = n = 1, is numpy's sdot: left to np.matmul)
        self.ok = _AVAILABLE and same and m > 0 and n > 0 and k > 0 and (m > 1 or n > 1)
        # blocks: enough for every thread. Along M once it has 96 rows (each sgemm keeps a
        # full-width B panel), else along N: measured on 21 CNN GEMM shapes (2 threads), M
        # wins from 96 rows (384x64x196: 47 vs 74 us, 1000x512x169: 610 vs 749) and N below
        # (64x576x3136: 945 vs 1234 us, 16x96x12544: 232 vs 351).
        work = self.batch
        self.split_m = self.split_n = 1
        if threads > 1 and work < threads:
            parts = -(-threads // work)
            if m >= 96 or n < 32:
                self.split_m = min(parts, max(1, m // 8))
            else:
                self.split_n = min(parts, max(1, -(-n // 16)))
        self.kernel = gemm_blocks.parallel if threads > 1 else gemm_blocks.serial
        # a matrix-vector product goes to sgemv, as numpy's matmul does (sgemm's rounding
        # differs from it in the last bits; the reference backend is np.matmul)
        self.vector = m == 1 or n == 1
        self.split_v = max(1, threads)
        self.kernel_v = gemv_blocks.parallel if threads > 1 else gemv_blocks.serial

    def __call__(self, a: np.ndarray, b: np.ndarray, out: np.ndarray, bias: Any = None,
                 act: int = 0, lo: Any = _ZERO, hi: Any = _ZERO, res: Any = None) -> bool:
        """``out = a @ b``; returns whether ``out = act(a @ b + bias[row] + res)`` was applied
        too (only on the pool's sgemm path: otherwise the caller's epilogue does it)."""
        call, fused = self.bind(a, b, out, bias, act, lo, hi, res)
        call()
        return fused

    def bind(self, a: np.ndarray, b: np.ndarray, out: np.ndarray, bias: Any = None,
             act: int = 0, lo: Any = _ZERO, hi: Any = _ZERO, res: Any = None
             ) -> tuple[Callable[[], None], bool]:
        """The call for these very buffers, prepared once: a plan that passes the same ones
        every run keeps it and skips the layout checks and pointer lookups (~10 us a GEMM in
        Python). The call holds the buffers, so their addresses stay valid."""
        if self.ok and out.dtype == np.float32 and out.flags.c_contiguous:
            oa, ob = _operand(a), _operand(b)
            if oa is not None and ob is not None:
                sa = 0 if self.bcast_a else oa[2]
                sb = 0 if self.bcast_b else ob[2]
                batches = self.batch == 1 or ((sa or self.bcast_a) and (sb or self.bcast_b))
                if batches and self.vector:
                    gemv = self._gemv_args(a, b, out, oa, ob, sa, sb)
                    if gemv is not None:
                        kv, keep_v = self.kernel_v, (a, b, out)  # keep: the addresses in gemv
                        return (lambda: kv(*gemv) if keep_v else None), False
                elif batches:
                    epi = bias is not None or res is not None or act != 0
                    fused = epi and (res is None or (res.dtype == np.float32 and
                                                     res.flags.c_contiguous)) and \
                        (bias is None or bias.dtype == np.float32)
                    y2 = out.reshape(-1, self.n) if fused else _DUMMY2
                    args = (a.ctypes.data, b.ctypes.data, out.ctypes.data, self.batch,
                            sa, sb, self.m * self.n, self.m, self.n, self.k, oa[0], ob[0],
                            oa[1], ob[1], self.n, self.split_m, self.split_n, y2,
                            bias if fused and bias is not None else _DUMMY1,
                            fused and bias is not None,
                            res.reshape(-1, self.n) if fused and res is not None
                            else _DUMMY2, fused and res is not None,
                            act if fused else 0, np.float32(lo), np.float32(hi))
                    kernel, keep = self.kernel, (a, b, out)
                    return (lambda: kernel(*args) if keep else None), bool(fused)
        return (lambda: np.matmul(a, b, out=out)), False

    def _gemv_args(self, a: np.ndarray, b: np.ndarray, out: np.ndarray,
                   oa: tuple[int, int, int], ob: tuple[int, int, int], sa: int,
                   sb: int) -> tuple[int, ...] | None:
        """gemv_blocks' arguments, or None when this layout is not a matrix-vector product it
        takes."""
        if self.n == 1:  # out[m] = op(a) @ b: b's elements K apart by its row stride
            incv = ob[1] if ob[0] == 0 else 1
            return (a.ctypes.data, b.ctypes.data, out.ctypes.data, self.batch, sa, sb,
                    self.m, self.m, self.k, oa[0], oa[1], incv,
                    1 if oa[0] else self.split_v)
        if oa[0] != 0:  # out[n] = a @ op(b) = op(b)^T a, a a contiguous row
            return None
        return (b.ctypes.data, a.ctypes.data, out.ctypes.data, self.batch, sb, sa,
                self.n, self.n, self.k, 1 - ob[0], ob[1], 1, self.split_v if ob[0] else 1)
