"""Native kernels for the composite ops CNNs and transformers spend time in outside Conv/GEMM.

- MaxPool / AveragePool (2-D, NCHW): separably, down the columns then along the row
  (``pool_separable``: 3+3 instead of 9 operations per output for 3x3, and faster than the
  earlier all-planes flat kernel for stride 1 too: 192x28x28 312 -> 205 us); dilated windows
  one pass per plane with the valid rows and columns clipped up front (``pool2d``). The average's
  divisor is the product of the counted row and column ranges (real elements, plus explicit
  padding when ``count_include_pad``; ceil-mode overhang never counts), as in the reference.
- GlobalAveragePool / GlobalMaxPool: a row reduction over ``[N*C, H*W]``.
- Softmax / LogSoftmax: ``[outer, axis, inner]`` (opset < 13 coerces to 2-D at ``axis``), max,
  exp-sum and the scaling in one kernel instead of two Reduces and three Elementwise steps;
  float32 exp is the vectorising ``ewhelpers.exp32`` (libm's expf per element costs 2x numpy).
- LayerNormalization: ``[outer, norm]`` rows, mean and variance accumulated in float64 (as the
  reference does), scale and bias fused; the optional Mean / InvStdDev outputs are written too.

Each ``plan_*`` returns None for what its kernel does not cover (other ranks, dtypes,
MaxPool's Indices output, ...): the step then runs the reference numpy kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numba
import numpy as np

from walle_backend_numba.binding import views, with_bind
from walle_backend_numba.ewhelpers import exp
from walle_backend_numba.jit import dual
from walle_core.ir.primitives import TensorSpec

Run = Callable[[list[Any], list[Any]], None]
FLOATS = ("float32", "float64")
SAFE_MATH = {"contract", "reassoc", "arcp"}  # no nnan/ninf: -inf masks must survive


# ---- pooling ------------------------------------------------------------------

@dual(fastmath=SAFE_MATH)
def pool2d(x: Any, y: Any, kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, pt: int,
           pl: int, is_max: bool, cnt_lo_h: int, cnt_hi_h: int, cnt_lo_w: int,
           cnt_hi_w: int) -> None:  # pragma: no cover
    """y[n, c, p, q] = max / mean of x over the window at (p*sh - pt, q*sw - pl); average
    divisor = rows in [cnt_lo_h, cnt_hi_h) x cols in [cnt_lo_w, cnt_hi_w) under the window.

    Tap by tap over whole output rows (like the depthwise conv): each tap's valid output
    columns are clipped once, so the inner loop has no branch and vectorises."""
    n_, c_, h, w = x.shape
    oh, ow = y.shape[2], y.shape[3]
    inv_cols = np.ones(ow, y.dtype)
    if not is_max:
        for q in range(ow):
            cols = 0
            for j in range(kw):
                if cnt_lo_w <= q * sw - pl + j * dw < cnt_hi_w:
                    cols += 1
            inv_cols[q] = 1.0 / max(cols, 1)
    for nc in numba.prange(n_ * c_):
        xc = x[nc // c_, nc % c_]
        yc = y[nc // c_, nc % c_]
        for p in range(oh):
            yrow = yc[p]
            r0 = p * sh - pt
            for q in range(ow):
                yrow[q] = -np.inf if is_max else 0
            rows = 0
            for i in range(kh):
                r = r0 + i * dh
                if cnt_lo_h <= r < cnt_hi_h:
                    rows += 1
                if r < 0 or r >= h:
                    continue
                xrow = xc[r]
                for j in range(kw):
                    off = j * dw - pl
                    lo = max(0, (-off + sw - 1) // sw)
                    hi = min(ow, (w - 1 - off) // sw + 1) if w - 1 - off >= 0 else 0
                    if hi <= lo:
                        continue
                    # views indexed by the loop counter: no wraparound checks, and a unit-step
                    # slice stays contiguous, so the loops vectorise
                    dst = yrow[lo:hi]
                    if sw == 1:
                        src1 = xrow[lo + off:hi + off]
                        if is_max:
                            for k in range(hi - lo):
                                dst[k] = max(dst[k], src1[k])
                        else:
                            for k in range(hi - lo):
                                dst[k] += src1[k]
                    else:
                        src = xrow[lo * sw + off:(hi - 1) * sw + off + 1:sw]
                        if is_max:
                            for k in range(hi - lo):
                                dst[k] = max(dst[k], src[k])
                        else:
                            for k in range(hi - lo):
                                dst[k] += src[k]
            if not is_max:
                inv_rows = 1.0 / max(rows, 1)
                for q in range(ow):
                    yrow[q] = yrow[q] * (inv_rows * inv_cols[q])


@numba.njit(cache=True, fastmath=SAFE_MATH, error_model="numpy")
def _pool_planes(x: Any, y: Any, kh: int, kw: int, sh: int, sw: int, pt: int, pl: int,
                 is_max: bool, scale: Any, row: Any, first: int,
                 last: int) -> None:  # pragma: no cover
    """Planes [first, last) of ``pool_separable``; ``row`` is the caller's padded row buffer
    (its padding holds the pad value and is never written)."""
    c_, h, w = x.shape[1], x.shape[2], x.shape[3]
    oh, ow = y.shape[2], y.shape[3]
    pad = -np.inf if is_max else 0.0
    p0 = max(pl, 0)
    for nc in range(first, last):
        n = nc // c_
        c = nc % c_
        for p in range(oh):
            # down the columns: the window's valid input rows into the row buffer
            r0 = p * sh - pt
            seen = False
            for i in range(kh):
                r = r0 + i
                if r < 0 or r >= h:
                    continue
                rr = max(r, 0)
                if not seen:
                    for k in range(w):
                        row[p0 + k] = x[n, c, rr, k]
                    seen = True
                elif is_max:
                    for k in range(w):
                        row[p0 + k] = max(row[p0 + k], x[n, c, rr, k])
                else:
                    for k in range(w):
                        row[p0 + k] += x[n, c, rr, k]
            if not seen:
                for k in range(w):
                    row[p0 + k] = pad
            # then along the row, stride 1 and 2 as literals (vectorised, not gathered)
            if is_max and kw == 3 and sw == 2:
                for q in range(ow):
                    y[n, c, p, q] = max(max(row[2 * q], row[2 * q + 1]), row[2 * q + 2])
            elif is_max and kw == 3 and sw == 1:
                for q in range(ow):
                    y[n, c, p, q] = max(max(row[q], row[q + 1]), row[q + 2])
            elif kw == 3 and sw == 1:  # the same sums, in the same order, as the loop below
                for q in range(ow):
                    y[n, c, p, q] = (row[q] + row[q + 1] + row[q + 2]) * scale[p, q]
            elif kw == 3 and sw == 2:
                for q in range(ow):
                    y[n, c, p, q] = (row[2 * q] + row[2 * q + 1] + row[2 * q + 2]) * scale[p, q]
            else:
                for q in range(ow):
                    y[n, c, p, q] = pad
                for j in range(kw):
                    if is_max:
                        if sw == 1:
                            for q in range(ow):
                                y[n, c, p, q] = max(y[n, c, p, q], row[q + j])
                        elif sw == 2:
                            for q in range(ow):
                                y[n, c, p, q] = max(y[n, c, p, q], row[2 * q + j])
                        else:
                            for q in range(ow):
                                y[n, c, p, q] = max(y[n, c, p, q], row[q * sw + j])
                    elif sw == 1:
                        for q in range(ow):
                            y[n, c, p, q] += row[q + j]
                    elif sw == 2:
                        for q in range(ow):
                            y[n, c, p, q] += row[2 * q + j]
                    else:
                        for q in range(ow):
                            y[n, c, p, q] += row[q * sw + j]
                if not is_max:
                    for q in range(ow):
                        y[n, c, p, q] *= scale[p, q]


@numba.njit(cache=True, fastmath=SAFE_MATH, error_model="numpy")
def _pool3_planes(x: Any, y: Any, is_max: bool, scale: Any, v: Any, first: int,
                  last: int) -> None:  # pragma: no cover
    """Planes [first, last) of a 3x3, stride-1, pad-1 pool (same-size output), each plane as
    flat loops: the vertical sum (or max) of the interior rows in one loop over the plane
    (``v`` [H*W] scratch), then the horizontal one in one loop, the few positions those loops
    get wrong (top and bottom rows; the first and last column, whose neighbours wrap to the
    adjacent row) fixed one by one. On 14x14 and 7x7 planes a loop per row was mostly loop
    set-up (576x14x14 AveragePool: 71 us, onnxruntime 41)."""
    h, w = x.shape[2], x.shape[3]
    hw = h * w
    # one flat view per call, indexed [plane, t]: a view per plane costs two atomics on the
    # shared array's reference count
    xf = x.reshape(x.shape[0] * x.shape[1], hw)
    yf = y.reshape(x.shape[0] * x.shape[1], hw)
    sf = scale.reshape(hw)
    w0 = max(w, 0)  # indices are a base LLVM can see is >= 0 plus the loop counter:
    n2 = max(hw - 2 * w0, 0)  # no negative-index select, so the loops vectorise
    for nc in range(max(first, 0), last):
        if h == 1:
            for t in range(w0):
                v[t] = xf[nc, t]
        elif is_max:
            for t in range(w0):
                v[t] = max(xf[nc, t], xf[nc, w0 + t])
            for u in range(n2):
                v[w0 + u] = max(max(xf[nc, u], xf[nc, w0 + u]), xf[nc, 2 * w0 + u])
            for u in range(w0):
                v[n2 + w0 + u] = max(xf[nc, n2 + u], xf[nc, n2 + w0 + u])
        else:
            for t in range(w0):
                v[t] = xf[nc, t] + xf[nc, w0 + t]
            for u in range(n2):
                v[w0 + u] = xf[nc, u] + xf[nc, w0 + u] + xf[nc, 2 * w0 + u]
            for u in range(w0):
                v[n2 + w0 + u] = xf[nc, n2 + u] + xf[nc, n2 + w0 + u]
        if w == 1:
            for t in range(hw):
                yf[nc, t] = v[t] if is_max else v[t] * sf[t]
            continue
        if is_max:
            for u in range(hw - 2):
                yf[nc, 1 + u] = max(max(v[u], v[1 + u]), v[2 + u])
            for p in range(h):  # the first and last column of each row
                b = p * w0
                yf[nc, b] = max(v[b], v[b + 1])
                yf[nc, b + w0 - 1] = max(v[b + w0 - 2], v[b + w0 - 1])
        else:
            for u in range(hw - 2):
                yf[nc, 1 + u] = (v[u] + v[1 + u] + v[2 + u]) * sf[1 + u]
            for p in range(h):
                b = p * w0
                yf[nc, b] = (v[b] + v[b + 1]) * sf[b]
                yf[nc, b + w0 - 1] = (v[b + w0 - 2] + v[b + w0 - 1]) * sf[b + w0 - 1]


@dual(fastmath=SAFE_MATH)
def pool3_same(x: Any, y: Any, is_max: bool, scale: Any) -> None:  # pragma: no cover
    """3x3 stride-1 pad-1 pooling (Inception's pool branches), planes in chunks on the pool,
    each chunk a call of the serial body :func:`_pool3_planes`."""
    n_, c_, h, w = x.shape
    planes_all = n_ * c_
    nchunk = min(planes_all, 8)
    for chunk in numba.prange(nchunk):
        v = np.empty(h * w, x.dtype)
        _pool3_planes(x, y, is_max, scale, v, chunk * planes_all // nchunk,
                      (chunk + 1) * planes_all // nchunk)


@dual(fastmath=SAFE_MATH)
def pool_separable(x: Any, y: Any, kh: int, kw: int, sh: int, sw: int, pt: int, pl: int,
                   is_max: bool, scale: Any, width: int) -> None:  # pragma: no cover
    """Dilation-1 pooling as two passes per output row: down the columns of the window's
    input rows (whole contiguous rows, vectorised) into a padded row buffer of ``width``, then
    along that row with the stride written as a literal for 1 and 2.

    Columns first: the strided pass runs over the OH output rows rather than all H input rows
    (MaxPool 3x3/2 64x112x112: 362 -> 189 us on one thread, against rows first). ``scale``
    [oh, ow] is the average divisor's inverse (unused for max). The planes go to the pool in
    chunks, each a call of the serial body (``_pool_planes``): the loops written inline in the
    ``prange`` compiled ~3x slower.
    """
    n_, c_ = x.shape[0], x.shape[1]
    pad = -np.inf if is_max else 0.0
    planes_all = n_ * c_
    nchunk = min(planes_all, 8)
    for chunk in numba.prange(nchunk):
        row = np.full(width, pad, x.dtype)
        _pool_planes(x, y, kh, kw, sh, sw, pt, pl, is_max, scale, row,
                     chunk * planes_all // nchunk, (chunk + 1) * planes_all // nchunk)


@dual(fastmath=SAFE_MATH)
def global_pool(x: Any, y: Any, is_max: bool) -> None:  # pragma: no cover
    """y[r] = mean or max of x[r, :] (x is [N*C, H*W])."""
    rows, n = x.shape
    for r in numba.prange(rows):
        xr = x[r]
        if is_max:
            acc = xr[0]
            for i in range(1, n):
                acc = max(acc, xr[i])
            y[r] = acc
        else:
            s = 0.0
            for i in range(n):
                s += xr[i]
            y[r] = s / n


@dual(fastmath=SAFE_MATH)
def global_pool_nhwc(x: Any, y: Any, is_max: bool) -> None:  # pragma: no cover
    """y[n, :] = mean or max over the pixels of x[n] ([N, H*W, C]): one vector loop over
    channels per pixel (a channels-last chain's end, runtime/layout.py)."""
    n_, hw, c_ = x.shape
    for n in numba.prange(n_):
        for ch in range(c_):
            y[n, ch] = x[n, 0, ch]
        for p in range(1, hw):
            if is_max:
                for ch in range(c_):
                    y[n, ch] = max(y[n, ch], x[n, p, ch])
            else:
                for ch in range(c_):
                    y[n, ch] += x[n, p, ch]
        if not is_max:
            for ch in range(c_):
                y[n, ch] /= hw


def _ints(value: Any, n: int, default: int) -> list[int]:
    return [int(v) for v in value] if value else [default] * n


def _auto_pad(attrs: dict[str, Any]) -> str:
    auto = attrs.get("auto_pad", "NOTSET")
    return auto.decode() if isinstance(auto, bytes) else str(auto)


def pool_pads(attrs: dict[str, Any], hw: Sequence[int], k: list[int], s: list[int],
              d: list[int]) -> list[int]:
    """[top, left, bottom, right] explicit padding after auto_pad (as the reference)."""
    auto = _auto_pad(attrs)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for i in range(2):
            o = -(-hw[i] // s[i])
            total = max((o - 1) * s[i] + (k[i] - 1) * d[i] + 1 - hw[i], 0)
            small, big = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else big)
            end.append(big if auto == "SAME_UPPER" else small)
        return begin + end
    if auto == "VALID":
        return [0, 0, 0, 0]
    return _ints(attrs.get("pads"), 4, 0)


def plan_pool(op: str, attrs: dict[str, Any], ins: Sequence[TensorSpec | None],
              outs: Sequence[TensorSpec]) -> Run | None:
    x, y = ins[0], outs[0]
    if x is None or len(outs) != 1 or x.dtype != y.dtype or x.dtype.np.name not in FLOATS:
        return None
    if op in ("GlobalAveragePool", "GlobalMaxPool") and attrs.get("layout") == "NHWC":
        if len(x.shape) != 4 or x.size == 0 or y.shape != (x.shape[0], x.shape[3], 1, 1):
            return None
        n_, hw, c_ = x.shape[0], x.shape[1] * x.shape[2], x.shape[3]
        glob_cl = global_pool_nhwc.pick(x.size)
        is_max = op == "GlobalMaxPool"
        return lambda i, o: glob_cl(i[0].reshape(n_, hw, c_), o[0].reshape(n_, c_), is_max)
    if attrs.get("layout"):
        return None
    if op in ("GlobalAveragePool", "GlobalMaxPool"):
        if len(x.shape) < 3 or x.size == 0:
            return None
        rows = x.shape[0] * x.shape[1]
        glob = global_pool.pick(x.size)
        is_max = op == "GlobalMaxPool"
        hw = x.size // max(rows, 1)

        def bind_glob(i: list[Any], o: list[Any]) -> Callable[[], None] | None:
            v = views((i[0], (rows, hw)), (o[0], (rows,)))
            return None if v is None else partial(glob, v[0], v[1], is_max)

        return with_bind(lambda i, o: glob(i[0].reshape(rows, -1), o[0].reshape(rows), is_max),
                          bind_glob)
    if len(x.shape) != 4 or len(y.shape) != 4 or "kernel_shape" not in attrs:
        return None
    k = _ints(attrs["kernel_shape"], 2, 1)
    if len(k) != 2:
        return None
    s = _ints(attrs.get("strides"), 2, 1)
    d = _ints(attrs.get("dilations"), 2, 1)
    pads = pool_pads(attrs, x.shape[2:], k, s, d)
    if len(s) != 2 or len(d) != 2 or len(pads) != 4:
        return None
    h, w = x.shape[2], x.shape[3]
    is_max = op == "MaxPool"
    if not is_max and int(attrs.get("count_include_pad", 0)):
        lo_h, hi_h, lo_w, hi_w = -pads[0], h + pads[2], -pads[1], w + pads[3]
    else:
        lo_h, hi_h, lo_w, hi_w = 0, h, 0, w
    oh, ow = y.shape[2], y.shape[3]
    if d == [1, 1] and min(pads) >= 0:
        rows = np.array([sum(lo_h <= p * s[0] - pads[0] + i < hi_h for i in range(k[0]))
                         for p in range(oh)], np.float64)
        cols = np.array([sum(lo_w <= q * s[1] - pads[1] + j < hi_w for j in range(k[1]))
                         for q in range(ow)], np.float64)
        scale = (1.0 / np.maximum(np.outer(rows, cols), 1)).astype(x.dtype.np)
        width = max(pads[1] + w, (ow - 1) * s[1] + k[1])
        if k == [3, 3] and s == [1, 1] and pads == [1, 1, 1, 1] and (oh, ow) == (h, w) and \
                x.shape[0] * x.shape[1] > 0 and h * w > 0 and \
                all(st > 0 for st in (x.shape[2], x.shape[3])):
            same = pool3_same.pick(y.size * 9)
            return with_bind(lambda i, o: same(i[0], o[0], is_max, scale),
                              lambda i, o: partial(same, i[0], o[0], is_max, scale))
        sep = pool_separable.pick(y.size * k[0] * k[1])
        args2 = (k[0], k[1], s[0], s[1], pads[0], pads[1], is_max, scale, width)
        return with_bind(lambda i, o: sep(i[0], o[0], *args2),
                          lambda i, o: partial(sep, i[0], o[0], *args2))
    kernel = pool2d.pick(y.size * k[0] * k[1])
    args = (k[0], k[1], s[0], s[1], d[0], d[1], pads[0], pads[1], is_max, lo_h, hi_h, lo_w, hi_w)
    return with_bind(lambda i, o: kernel(i[0], o[0], *args),
                      lambda i, o: partial(kernel, i[0], o[0], *args))


# ---- softmax ------------------------------------------------------------------

LANES = 16  # independent running maxima: a vector's worth, so the max loop vectorises
ROWS_PER_TASK = 16  # softmax rows per parallel task (one lanes buffer each)


@numba.njit(cache=True, fastmath=SAFE_MATH, error_model="numpy")
def _softmax_rows(x: Any, y: Any, log: bool, r0: int, r1: int,
                  lanes: Any) -> None:  # pragma: no cover
    """Rows [r0, r1) of :func:`softmax_rows`, whole-array indexed (no view per row); exp,
    sum and scale as separate passes (the exp written and summed in one loop did not
    vectorise: 512x128 116 -> 68 us on one thread)."""
    n = x.shape[1]
    full = n - n % LANES
    for r in range(r0, r1):
        m = x[r, 0]
        if full:
            for j in range(LANES):
                lanes[j] = x[r, j]
            for i0 in range(LANES, full, LANES):
                b = max(i0, 0)
                for j in range(LANES):
                    v = x[r, b + j]
                    lanes[j] = v if v > lanes[j] else lanes[j]
            for j in range(LANES):
                m = lanes[j] if lanes[j] > m else m
        for i in range(full, n):
            m = x[r, i] if x[r, i] > m else m
        s = 0.0
        if log:
            for i in range(n):
                s += exp(x[r, i] - m)
            ls = np.log(s)
            for i in range(n):
                y[r, i] = x[r, i] - m - ls
        else:
            for i in range(n):
                y[r, i] = exp(x[r, i] - m)
            for i in range(n):
                s += y[r, i]
            inv = 1.0 / s
            for i in range(n):
                y[r, i] = y[r, i] * inv


@dual(fastmath=SAFE_MATH, error_model="numpy")
def softmax_rows(x: Any, y: Any, log: bool) -> None:  # pragma: no cover
    """Softmax over the last axis of x [rows, n]; chunks of rows on the pool, each a call of
    the serial body (``_softmax_rows``). A NaN after a row's first element is skipped by the
    max but still reaches every output through exp(NaN - max)."""
    rows = x.shape[0]
    nchunk = min(rows, 16)
    for t in numba.prange(nchunk):
        lanes = np.empty(LANES, x.dtype)
        _softmax_rows(x, y, log, t * rows // nchunk, (t + 1) * rows // nchunk, lanes)


@dual(fastmath=SAFE_MATH, error_model="numpy")
def softmax_mid(x: Any, y: Any, log: bool) -> None:  # pragma: no cover
    """Softmax over the middle axis of x [outer, n, inner] (vectors along inner)."""
    outer, n, inner = x.shape
    for o in numba.prange(outer):
        xo = x[o]
        yo = y[o]
        m = xo[0].copy()
        for i in range(1, n):
            for t in range(inner):
                m[t] = max(m[t], xo[i, t])
        s = np.zeros(inner, np.float64)
        for i in range(n):
            for t in range(inner):
                e = exp(xo[i, t] - m[t])
                s[t] += e
                if not log:
                    yo[i, t] = e
        for i in range(n):
            for t in range(inner):
                if log:
                    yo[i, t] = xo[i, t] - m[t] - np.log(s[t])
                else:
                    yo[i, t] = yo[i, t] / s[t]


def plan_softmax(op: str, attrs: dict[str, Any], opset: int, ins: Sequence[TensorSpec | None],
                 outs: Sequence[TensorSpec]) -> Run | None:
    x, y = ins[0], outs[0]
    if x is None or len(outs) != 1 or x.dtype != y.dtype or x.dtype.np.name not in FLOATS:
        return None
    rank = len(x.shape)
    if rank == 0 or x.size == 0:
        return None
    default = 1 if opset < 13 else -1
    axis = int(attrs.get("axis", default))
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        return None
    outer = int(np.prod(x.shape[:axis]))
    if opset < 13:  # coerced to 2-D: everything from axis on is one row
        n, inner = int(np.prod(x.shape[axis:])), 1
    else:
        n, inner = x.shape[axis], int(np.prod(x.shape[axis + 1:]))
    log = op == "LogSoftmax"
    if inner == 1:
        rows_kernel = softmax_rows.pick(x.size * 4)

        def bind_rows(i: list[Any], o: list[Any]) -> Callable[[], None] | None:
            v = views((i[0], (outer, n)), (o[0], (outer, n)))
            return None if v is None else partial(rows_kernel, v[0], v[1], log)

        return with_bind(lambda i, o: rows_kernel(i[0].reshape(outer, n),
                                                   o[0].reshape(outer, n), log), bind_rows)
    mid_kernel = softmax_mid.pick(x.size * 4)
    return lambda i, o: mid_kernel(i[0].reshape(outer, n, inner),
                                   o[0].reshape(outer, n, inner), log)


# ---- layer normalization ------------------------------------------------------------------

@dual(fastmath=SAFE_MATH, error_model="numpy")
def layer_norm(x: Any, scale: Any, bias: Any, has_bias: bool, eps: float, y: Any, mean: Any,
               inv: Any) -> None:  # pragma: no cover
    """y[r] = (x[r] - mean) * inv_std * scale + bias over rows of x [rows, n]."""
    rows, n = x.shape
    for r in numba.prange(rows):
        xr = x[r]
        yr = y[r]
        s = 0.0
        for i in range(n):
            s += xr[i]
        mu = s / n
        v = 0.0
        for i in range(n):
            dlt = xr[i] - mu
            v += dlt * dlt
        istd = 1.0 / np.sqrt(v / n + eps)
        mean[r] = mu
        inv[r] = istd
        if has_bias:
            for i in range(n):
                yr[i] = (xr[i] - mu) * istd * scale[i] + bias[i]
        else:
            for i in range(n):
                yr[i] = (xr[i] - mu) * istd * scale[i]


def plan_layer_norm(attrs: dict[str, Any], ins: Sequence[TensorSpec | None],
                    outs: Sequence[TensorSpec]) -> Run | None:
    x, scale = ins[0], ins[1] if len(ins) > 1 else None
    bias = ins[2] if len(ins) > 2 else None
    if x is None or scale is None or x.dtype.np.name not in FLOATS or outs[0].dtype != x.dtype:
        return None
    rank = len(x.shape)
    axis = int(attrs.get("axis", -1))
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank or x.size == 0:
        return None
    rows, n = int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:]))
    if scale.size != n or scale.dtype != x.dtype or (bias is not None and (
            bias.size != n or bias.dtype != x.dtype)):
        return None
    stash = np.float32 if int(attrs.get("stash_type", 1)) == 1 else x.dtype.np
    for extra in outs[1:]:
        if extra.size != rows or extra.dtype.np != stash:
            return None
    eps = float(attrs.get("epsilon", 1e-5))
    kernel = layer_norm.pick(x.size * 4)
    dt = x.dtype.np
    no_bias = np.zeros(1, dt)
    has_bias = bias is not None
    spare_mean, spare_inv = np.empty(rows, stash), np.empty(rows, stash)  # unused outputs

    def run(i: list[Any], o: list[Any]) -> None:
        mean = o[1].reshape(rows) if len(o) > 1 and o[1] is not None else spare_mean
        inv = o[2].reshape(rows) if len(o) > 2 and o[2] is not None else spare_inv
        b = i[2].reshape(n) if has_bias else no_bias
        kernel(i[0].reshape(rows, n), i[1].reshape(n), b, has_bias, eps,
               o[0].reshape(rows, n), mean, inv)

    def bind(i: list[Any], o: list[Any]) -> Callable[[], None] | None:
        if len(o) > 1:  # mean / inverse std outputs: the runner's own path
            return None
        v = views((i[0], (rows, n)), (i[1], (n,)), (o[0], (rows, n)),
                   *([(i[2], (n,))] if has_bias else []))
        if v is None:
            return None
        return partial(kernel, v[0], v[1], v[3] if has_bias else no_bias, has_bias, eps, v[2],
                       spare_mean, spare_inv)

    return with_bind(run, bind)


# ---- LRN ----------------------------------------------------------------------

@dual(fastmath=SAFE_MATH, error_model="numpy")
def lrn(x: Any, y: Any, lo: int, hi: int, k: Any, bias: Any, beta: Any, mode: int,
        nch: int) -> None:  # pragma: no cover
    """y[n, c] = x[n, c] / (bias + k * sum_{c' in [c-lo, c+hi]} x[n, c']^2) ** beta over
    x [N, C, S].

    The window sum slides along the channels (add the square entering, subtract the one
    leaving: two passes per channel instead of ``size``), accumulated in float64 so the
    subtraction loses nothing that matters; the power is taken in the tensor's dtype, beta 0.75
    / 0.5 / 1 as square roots instead of a scalar pow (``mode``), vectorised over S. Indices
    are whole-array (no view per channel and window step), a base plus the loop counter. The
    work is split into ``nch`` ranges of S per image, so batch 1 runs parallel too.
    """
    n_, c_, sp = x.shape
    span = (sp + nch - 1) // nch
    for t in numba.prange(n_ * nch):
        n = t // nch
        s0 = max((t % nch) * span, 0)
        m = min(sp, s0 + span) - s0
        if m <= 0:
            continue
        acc = np.zeros(m, np.float64)
        sums = np.empty(m, x.dtype)  # the window sums in the tensor's dtype
        for j in range(min(c_, hi)):  # the window of channel 0 minus its top element
            for i in range(m):
                v = np.float64(x[n, j, s0 + i])
                acc[i] += v * v
        for c in range(c_):
            top = c + hi
            if top < c_:
                for i in range(m):
                    v = np.float64(x[n, top, s0 + i])
                    acc[i] += v * v
            out = c - lo - 1
            if out >= 0:
                for i in range(m):
                    v = np.float64(x[n, out, s0 + i])
                    acc[i] -= v * v
            for i in range(m):  # sliding sums may end a hair below 0
                sums[i] = acc[i] if acc[i] > 0 else 0.0
            # bias, k, beta come typed like x: this runs in its dtype; one loop per mode
            if mode == 1:  # beta = 0.75
                for i in range(m):
                    r = np.sqrt(bias + k * sums[i])
                    y[n, c, s0 + i] = x[n, c, s0 + i] / (r * np.sqrt(r))
            elif mode == 2:  # beta = 0.5
                for i in range(m):
                    y[n, c, s0 + i] = x[n, c, s0 + i] / np.sqrt(bias + k * sums[i])
            elif mode == 3:  # beta = 1
                for i in range(m):
                    y[n, c, s0 + i] = x[n, c, s0 + i] / (bias + k * sums[i])
            else:
                for i in range(m):
                    y[n, c, s0 + i] = x[n, c, s0 + i] / (bias + k * sums[i]) ** beta


def plan_lrn(attrs: dict[str, Any], ins: Sequence[TensorSpec | None],
             outs: Sequence[TensorSpec]) -> Run | None:
    x = ins[0] if ins else None
    if x is None or len(x.shape) < 3 or x.dtype.np.name not in FLOATS or outs[0].dtype != x.dtype:
        return None
    size = int(attrs["size"])
    alpha, beta = float(attrs.get("alpha", 1e-4)), float(attrs.get("beta", 0.75))
    bias = float(attrs.get("bias", 1.0))
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    mode = {0.75: 1, 0.5: 2, 1.0: 3}.get(beta, 0)
    n, c = x.shape[0], x.shape[1]
    sp = int(np.prod(x.shape[2:]))
    kernel = lrn.pick(x.size * size)
    nch = max(1, min(8, sp // 256))  # ranges of S, each long enough to vectorise

    dt = x.dtype.np.type
    k_, bias_, beta_ = dt(alpha / size), dt(bias), dt(beta)

    def run(i: list[Any], o: list[Any]) -> None:
        kernel(i[0].reshape(n, c, sp), o[0].reshape(n, c, sp), lo, hi, k_, bias_, beta_, mode,
               nch)

    return run


NATIVE = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Softmax",
                    "LogSoftmax", "LayerNormalization", "LRN"})


def plan(op: str, attrs: dict[str, Any], opset: int, ins: Sequence[TensorSpec | None],
         outs: Sequence[TensorSpec]) -> Run | None:
    if op in ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"):
        return plan_pool(op, attrs, ins, outs)
    if op in ("Softmax", "LogSoftmax"):
        return plan_softmax(op, attrs, opset, ins, outs)
    if op == "LayerNormalization":
        return plan_layer_norm(attrs, ins, outs)
    if op == "LRN":
        return plan_lrn(attrs, ins, outs)
    return None
