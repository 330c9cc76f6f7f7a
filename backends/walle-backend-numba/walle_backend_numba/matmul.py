"""MatMul: BLAS GEMM (np.matmul straight into the output buffer) plus a fused numba epilogue.

Measured on the development machine (bench_kernels.py), OpenBLAS's packed GEMM beats a numba
blocked loop at every size that matters for CNNs and transformers, so the GEMM itself goes to
BLAS; what numba adds is the epilogue ``act(alpha * y + beta * bias)`` in one pass over the
output, instead of numpy's three temporaries. Layout: row-major, batch dims broadcast as in
np.matmul; the bias is a scalar, a length-N row, a length-M column, or the full output.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numba
import numpy as np

from walle_backend_numba.binding import views
from walle_backend_numba.jit import dual
from walle_core.ir.primitives import MatMul, TensorSpec

ACTS = {"": 0, "relu": 1, "clip": 2, "sigmoid": 3, "tanh": 4}
NO_BIAS, SCALAR, ROW, FULL, COLUMN = range(5)


@numba.njit(cache=True, fastmath={"contract"}, error_model="numpy")
def _epilogue_rows(y: Any, r0: int, r1: int, alpha: Any, bias: Any, kind: int, beta: Any,
                   act: int, lo: Any, hi: Any, m: int) -> None:  # pragma: no cover
    """Rows [r0, r1) of :func:`epilogue`."""
    n = y.shape[1]
    one = alpha - alpha + 1
    zero = alpha - alpha
    for r in range(r0, r1):
        if kind == ROW or kind == FULL:
            base = 0 if kind == ROW else max(r * n, 0)
            if act == 0:
                for c in range(n):
                    y[r, c] = y[r, c] * alpha + beta * bias[base + c]
            elif act == 1:
                for c in range(n):
                    v = y[r, c] * alpha + beta * bias[base + c]
                    y[r, c] = v if not (v < 0) else zero
            elif act == 2:
                for c in range(n):
                    v = y[r, c] * alpha + beta * bias[base + c]
                    y[r, c] = lo if v < lo else (hi if v > hi else v)
            elif act == 3:
                for c in range(n):
                    y[r, c] = one / (one + np.exp(-(y[r, c] * alpha + beta * bias[base + c])))
            else:
                for c in range(n):
                    y[r, c] = np.tanh(y[r, c] * alpha + beta * bias[base + c])
            continue
        rb = zero
        if kind == SCALAR:
            rb = beta * bias[0]
        elif kind == COLUMN:
            rb = beta * bias[r % m]
        if act == 0:
            for c in range(n):
                y[r, c] = y[r, c] * alpha + rb
        elif act == 1:
            for c in range(n):
                v = y[r, c] * alpha + rb
                y[r, c] = v if not (v < 0) else zero
        elif act == 2:
            for c in range(n):
                v = y[r, c] * alpha + rb
                y[r, c] = lo if v < lo else (hi if v > hi else v)
        elif act == 3:
            for c in range(n):
                y[r, c] = one / (one + np.exp(-(y[r, c] * alpha + rb)))
        else:
            for c in range(n):
                y[r, c] = np.tanh(y[r, c] * alpha + rb)


@dual(fastmath={"contract"}, error_model="numpy")
def epilogue(y: Any, alpha: Any, bias: Any, kind: int, beta: Any, act: int, lo: Any, hi: Any,
             m: int) -> None:  # pragma: no cover
    """In place on y [rows, n]: y = act(alpha*y + beta*bias); rows are (batch*M).

    Branches on ``kind`` and ``act`` are taken once per row, so each inner loop is a plain
    vectorisable pass (a per-element ``r % m`` and activation switch cost ~10x more). The
    rows go to the pool in chunks, each a call of the serial body (``_epilogue_rows``): the
    loops written inline in the ``prange`` compiled ~8x slower (a 128x768 row-bias add:
    79 us against 9.7 on one thread).
    """
    rows = y.shape[0]
    nchunk = min(rows, 16)
    for t in numba.prange(nchunk):
        _epilogue_rows(y, t * rows // nchunk, (t + 1) * rows // nchunk, alpha, bias, kind, beta,
                       act, lo, hi, m)


#: Multiply-adds below which a GEMM stays single-threaded in np.matmul (a pool call costs ~5 us
#: more in Python; DIN's [1,36]x[36,80] layers lost 50 us per run to it).
POOL_MIN = 1 << 18


class NumpyGemm:
    """``np.matmul`` behind :class:`pool.Gemm`'s interface; it never applies the epilogue
    (the caller's then does)."""

    def __call__(self, a: Any, b: Any, out: Any, *epilogue: Any) -> bool:
        np.matmul(a, b, out=out)
        return False

    def bind(self, a: Any, b: Any, out: Any, *epilogue: Any
             ) -> tuple[Callable[[], None], bool]:
        def call() -> None:
            np.matmul(a, b, out=out)

        return call, False


_NUMPY_GEMM = NumpyGemm()


def gemm(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> Any:
    """A GEMM for these operand shapes, called ``(a, b, out[, bias, act, lo, hi, res])`` or
    prepared for fixed buffers with ``.bind(...)``: on numba's pool when the thread policy put
    GEMMs there (``threads.POOL``, :class:`pool.Gemm`), else ``np.matmul`` (BLAS's threads).
    Both say whether they also applied ``act(out + bias[row] + res)`` (the pool does, per
    block; ``np.matmul`` does not: the caller then does)."""
    from walle_backend_numba import threads

    work = int(np.prod(a_shape[:-1])) * int(np.prod(b_shape[-1:])) * int(a_shape[-1])
    if not threads.POOL or work < POOL_MIN:  # a small GEMM: one thread, least call overhead
        return _NUMPY_GEMM
    from walle_backend_numba.pool import Gemm

    return Gemm(a_shape, b_shape, numba.get_num_threads())


def bias_kind(bias: TensorSpec | None, m: int, n: int, out_size: int) -> int | None:
    if bias is None:
        return NO_BIAS
    shape = bias.shape
    if bias.size == 1:
        return SCALAR
    if bias.size == n and (len(shape) == 0 or shape[-1] == n):
        return ROW
    if bias.size == m and len(shape) >= 2 and shape[-1] == 1 and shape[-2] == m:
        return COLUMN
    if bias.size == out_size:
        return FULL
    return None


def out_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return (*np.broadcast_shapes(a[:-2], b[:-2]), a[-2], b[-1])


def mk_fits(prim: MatMul, a: TensorSpec, b: TensorSpec, bias: TensorSpec | None,
            out: TensorSpec) -> bool:
    """Whether the ``mk`` variant (``microkernel.gemm``) runs this MatMul: float32, B one
    untransposed matrix (a Linear layer's weights; batch dims of size 1 allowed), A's batch
    dims folded into its rows, no alpha/beta scaling, the bias none or one per column or per
    row."""
    f32 = np.dtype(np.float32)
    if any(t is not None and t.dtype.np != f32 for t in (a, b, bias, out)):
        return False
    if prim.trans_a or prim.trans_b or len(a.shape) < 2 or len(b.shape) < 2:
        return False
    if any(d != 1 for d in b.shape[:-2]) or a.shape[-1] != b.shape[-2]:
        return False
    if prim.alpha != 1.0 or prim.beta != 1.0 or prim.activation not in ACTS:
        return False
    rows = int(np.prod(a.shape[:-1]))
    n = b.shape[-1]
    if rows * n != out.size or rows == 0 or n == 0 or a.shape[-1] == 0:
        return False
    return _mk_bias(bias, a, n) is not None


def _mk_bias(bias: TensorSpec | None, a: TensorSpec, n: int) -> str | None:
    """How ``mk`` adds this bias: "none", "column" (one per column of C, a Linear layer's),
    "row" (one per row, A without batch dims), or None when it cannot."""
    if bias is None:
        return "none"
    if bias.size == n and (len(bias.shape) == 0 or bias.shape[-1] == n):
        return "column"
    if len(a.shape) == 2 and bias.size == a.shape[0] and len(bias.shape) >= 2 and \
            bias.shape[-1] == 1:
        return "row"
    return None


#: B at least this large is packed in column panels for ``mk`` (:func:`mk_packed_bytes`).
PACK_BYTES = 512 << 10


def mk_packed_bytes(b: TensorSpec) -> int:
    """Bytes of the panel-packed copy of B that ``mk`` keeps, 0 when it reads B as it is.

    B [K, N] row-major puts each k of a tile's 48 columns one row (N floats) from the last:
    a stream of K short runs in as many pages, which the hardware prefetchers barely follow
    once B leaves the caches. Packed, a tile's B is one contiguous stream. BERT's Linear
    layers (128 tokens, 2 threads): 256->1024 292 -> 217 us hot, 428 -> 354 cold; 1024->256
    260 -> 220, 394 -> 356; 256->768 185 -> 163; 256->256 (256 KB) 60 -> 63, not packed."""
    from walle_backend_numba import microkernel

    k, n = b.shape[-2], b.shape[-1]
    if k * n * 4 < PACK_BYTES:
        return 0
    return microkernel.panels_bytes(k, n)


def _plan_mk(prim: MatMul, a: TensorSpec, b: TensorSpec, bias: TensorSpec | None,
             out: TensorSpec) -> Callable[[Any, Any, Any, Any], None]:
    """C [rows, N] = act(A [rows, K] @ B [K, N] + bias) through the register-tiled
    micro-kernel, the bias and relu/clip applied in its store (sigmoid/tanh after, one pass).
    OpenBLAS packs both operands on every call; at a BERT encoder's sizes (128 x 256..1024 x
    256..1024) this is 15-25% faster (2 threads, bias included: 128x256x1024 248 vs 293 us,
    128x1024x256 224 vs 272)."""
    from walle_backend_numba import microkernel
    from walle_backend_numba.conv import _packed_address

    k, n = b.shape[-2], b.shape[-1]
    rows = int(np.prod(a.shape[:-1]))
    col_bias = _mk_bias(bias, a, n) == "column"
    act = ACTS[prim.activation]
    params = (prim.act_params or (0.0, 0.0))
    lo, hi = microkernel.clamp_bounds(act, float(params[0]),
                                      float(params[1]) if len(params) > 1 else 0.0)
    after = act not in (0, 1, 2)
    f32 = np.float32
    zero = np.zeros(max(rows, n), f32)
    # B of PACK_BYTES or more: packed in column panels once per constant B (again when a
    # run-time B's values change)
    packed = _packed_address(k, n) if mk_packed_bytes(b) else None
    entry = microkernel.gemm_packed if packed else microkernel.gemm
    kernel = entry.pick(rows * n * k)
    chunks = numba.get_num_threads() if kernel is entry.parallel else 1
    post = epilogue.pick(out.size)
    plo, phi = (f32(p) for p in (tuple(params) + (0.0, 0.0))[:2])
    memo: list[Any] = [None, None]

    def run(x: Any, w: Any, c: Any, y: Any) -> None:
        key = (id(x), id(w), id(c), id(y))
        if memo[0] != key:  # a plan passes the same buffers every run: the arguments once
            xa = np.ascontiguousarray(x, f32)
            wb = np.ascontiguousarray(w, f32) if packed is None else w
            cb = zero if c is None else np.ascontiguousarray(c.reshape(-1), f32)
            # the kernel writes rows n apart: a strided output gets a contiguous stand-in
            yc = y if y.flags.c_contiguous else np.empty(y.shape, f32)
            # a copied operand is not kept: the buffer's values may change between runs
            copied = not (np.may_share_memory(xa, x) and np.may_share_memory(wb, w) and
                          (c is None or np.may_share_memory(cb, c)))
            memo[0] = None if copied else key
            # the addresses too: ``ndarray.ctypes.data`` costs ~0.8 us a call
            memo[1] = (xa, wb, cb, yc, y, xa.ctypes.data, wb.ctypes.data, yc.ctypes.data,
                       cb.ctypes.data)
        yc = memo[1][3]
        px, pw_, py, pb = memo[1][5:]
        if packed is None:
            kernel(px, k, pw_, n, py, n, rows, n, k, pb, col_bias, 0, n, lo, hi, chunks)
        else:
            kernel(px, k, packed(w), py, n, rows, n, k, pb, col_bias, 0, n, lo, hi, chunks)
        if after:
            post(yc.reshape(rows, n), f32(1), zero, NO_BIAS, f32(0), act, plo, phi, rows)
        if yc is not y:
            np.copyto(y, yc)

    def bind(x: Any, w: Any, c: Any, y: Any) -> Callable[[], None] | None:
        """The micro-kernel with every address resolved, when nothing is copied per run
        (the executor keeps the buffers, the runner the packed weights)."""
        if after or not (y.flags.c_contiguous and y.dtype == f32 and
                         x.flags.c_contiguous and x.dtype == f32):
            return None
        if c is not None and not (c.flags.c_contiguous and c.dtype == f32):
            return None
        pb = zero.ctypes.data if c is None else c.ctypes.data
        if packed is None:
            if not (w.flags.c_contiguous and w.dtype == f32):
                return None
            return partial(kernel, x.ctypes.data, k, w.ctypes.data, n, y.ctypes.data, n, rows,
                           n, k, pb, col_bias, 0, n, lo, hi, chunks)
        if w.flags.writeable:  # its values may change: packed again when they do
            return None
        return partial(kernel, x.ctypes.data, k, packed(w), y.ctypes.data, n, rows, n, k, pb,
                       col_bias, 0, n, lo, hi, chunks)

    run.bind = bind  # type: ignore[attr-defined]
    return run


def plan(prim: MatMul, a: TensorSpec, b: TensorSpec, bias: TensorSpec | None,
         out: TensorSpec, variant: str | None = None
         ) -> Callable[[Any, Any, Any, Any], None] | None:
    if variant == "mk":
        return _plan_mk(prim, a, b, bias, out) if mk_fits(prim, a, b, bias, out) else None
    dtype = out.dtype.np
    if dtype.name not in ("float32", "float64") or len(a.shape) < 2 or len(b.shape) < 2:
        return None
    if a.dtype.np != dtype or b.dtype.np != dtype or (bias is not None and bias.dtype.np != dtype):
        return None
    ash = (*a.shape[:-2], *a.shape[-2:][::-1]) if prim.trans_a else a.shape
    bsh = (*b.shape[:-2], *b.shape[-2:][::-1]) if prim.trans_b else b.shape
    if ash[-1] != bsh[-2]:
        return None
    shape = out_shape(ash, bsh)
    size = int(np.prod(shape))
    if size != out.size or prim.activation not in ACTS:
        return None
    m, n = shape[-2], shape[-1]
    kind = bias_kind(bias, m, n, size)
    if kind is None:
        return None
    act = ACTS[prim.activation]
    lo, hi = (dtype.type(p) for p in (prim.act_params or (0, 0))[:2])
    if act == ACTS["relu"]:
        lo = dtype.type(0)  # the relu branch uses lo - lo as a typed zero
    alpha, beta = dtype.type(prim.alpha), dtype.type(prim.beta)
    needs_epilogue = kind != NO_BIAS or act != 0 or prim.alpha != 1.0
    dummy = np.zeros(1, dtype)
    post = epilogue.pick(size)
    mul = gemm(ash, bsh)

    memo: list[Any] = [None, None]  # buffer ids -> their views (a plan passes the same ones)

    def run(x: Any, w: Any, c: Any, y: Any) -> None:
        key = (id(x), id(w), id(c), id(y))  # the memo holds the buffers: ids stay unique
        if memo[0] != key:
            xa = np.swapaxes(x, -1, -2) if prim.trans_a else x
            wb = np.swapaxes(w, -1, -2) if prim.trans_b else w
            target = y.reshape(shape)
            flat_bias = c.reshape(-1) if c is not None else dummy
            call = mul.bind(xa, wb, target)[0]  # prepared once per buffers
            memo[0], memo[1] = key, (call, target.reshape(-1, n), flat_bias, x, w, c, y)
        call, target2, flat_bias = memo[1][:3]
        call()
        if needs_epilogue and size:
            post(target2, alpha, flat_bias, kind, beta, act, lo, hi, m)

    def bind(x: Any, w: Any, c: Any, y: Any) -> Callable[[], None] | None:
        v = views((y, shape))
        if v is None:
            return None
        target = v[0]
        xa = np.swapaxes(x, -1, -2) if prim.trans_a else x
        wb = np.swapaxes(w, -1, -2) if prim.trans_b else w
        call = mul.bind(xa, wb, target)[0]
        if not (needs_epilogue and size):
            return call  # type: ignore[no-any-return]
        target2 = target.reshape(-1, n)
        flat_bias = c.reshape(-1) if c is not None else dummy

        def call_post() -> None:
            call()
            post(target2, alpha, flat_bias, kind, beta, act, lo, hi, m)

        return call_post

    run.bind = bind  # type: ignore[attr-defined]
    return run
