"""Native 2-D Conv: the algorithms CNNs need, each one a variant the semi-auto search can pick.

- ``pointwise`` (1x1, stride 1, no padding): ``y[n, g] = W[g] @ x[n, g]`` straight on the NCHW
  buffers (GEMM, no copy at all).
- ``depthwise`` (one input channel per group): a numba loop per (n, c) plane over a zero-padded
  copy (stride 1: one loop per tap over the flattened plane); ``depthwise_cl`` the same through
  a channels-last copy, for deep, small planes. Bias and activation in the same pass.
- ``im2col`` (any conv): numba im2col into a scratch matrix ``[C/G*KH*KW, OH*OW]``, then one
  BLAS GEMM per (n, g) into the output. ``im2col_tiles`` the same per tile of output rows, each
  a pool task, so the columns stay in that core's cache.
- ``pointwise_mk`` / ``im2col_mk`` (float32): the GEMMs of ``pointwise`` / ``im2col_tiles``
  through the register-tiled micro-kernel (``microkernel.py``), bias, residual and relu/clip
  applied in its store.
- ``winograd2`` / ``winograd4`` (3x3, stride 1, dilation 1, group 1): Winograd F(2x2,3x3) /
  F(4x4,3x3). Weights are transformed once (``U = G g G^T``, ``[a*a, C, M]``; cached while the
  weight buffer is a read-only constant); the input is packed channels-last and zero-padded,
  tiles ``V = B^T d B`` (``[a*a, tiles, C]``), then a*a GEMMs ``V[k] @ U[k]`` and the output
  transform ``A^T m A`` with bias and activation fused. The transforms' coefficients are
  written out and every line is a vector operation over the channels. 2.25x (F2) or 4x (F4)
  fewer multiplies than im2col, paid for with the two transforms and with GEMMs that are
  small (tiles x C) and read ``a*a`` times the weights: they win on mid-sized planes.

Scratch (im2col columns, Winograd tiles) comes from one per-thread buffer sized to the largest
step, so a plan does not hold one scratch matrix per Conv. Bias is added (per output channel)
in the same numba epilogue MatMul uses. Layout NCHW, weights ``[M, C/G, KH, KW]``; float32 and
float64 natively, float16 computed in float32 and rounded once. Other cases return None and run
on the reference kernel.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numba
import numpy as np

from walle_backend_numba import microkernel, transpose
from walle_backend_numba.binding import flat_views, views
from walle_backend_numba.jit import dual
from walle_backend_numba.matmul import ACTS, COLUMN, NO_BIAS, epilogue, gemm
from walle_backend_numba.pool import bias_act, bias_act_rows, sgemm
from walle_core.ir.primitives import TensorSpec

VARIANTS = ("pointwise", "pointwise_mk", "depthwise", "depthwise_cl", "im2col",
            "im2col_mk", "im2col_tiles", "winograd2", "winograd4", "direct_mk")
#: Input channels up to which a group-1 Conv (an RGB stem) is offered ``direct_mk``.
DIRECT_CHANNELS = 4
ConvRun = Callable[..., None]  # (x, w, bias or None, y, residual or None)


@dual()
def im2col(x: Any, col: Any, c0: int, cg: int, kh: int, kw: int, sh: int, sw: int, ph: int,
           pw: int, dh: int, dw: int, p0: int, p1: int, ow: int) -> None:  # pragma: no cover
    """col[(c*kh + i)*kw + j, (p - p0)*ow + q] = x[c0 + c, p*sh + i*dh - ph, q*sw + j*dw - pw]
    or 0, for the output rows p in [p0, p1).

    Per (row, p) the valid q form one range [q0, q1): zeros either side, a copy in between.
    Indices are a base plus the loop counter, the base wrapped in max(.., 0) (it is never
    negative; saying so lets LLVM drop numba's negative-index select), with strides 1 and 2
    as literals: the copies vectorise. No views are made in the loops.
    """
    h, w = x.shape[1], x.shape[2]
    flat = x.reshape(x.shape[0], h * w)
    for row in numba.prange(cg * kh * kw):
        c = c0 + row // (kh * kw)
        i = (row // kw) % kh
        j = row % kw
        off = j * dw - pw  # input column of q = 0
        q0 = 0 if off >= 0 else min(ow, (-off + sw - 1) // sw)
        q1 = max(q0, min(ow, (w - 1 - off) // sw + 1)) if w - 1 - off >= 0 else q0
        s0 = max(q0 * sw + off, 0)
        if sh == 1 and sw == 1 and ow == w:
            # rows of col and of x have the same length: the whole tile is ONE shifted copy
            # of the plane, then the few positions that wrapped across a row (q outside
            # [q0, q1)) or fell outside the plane are zeroed. Small planes had three tiny
            # loops per output row (512x7x7: 200 us for 0.9 MB)
            shift = (i * dh - ph) * w + off  # x's flat index of (p, q) minus p*w + q
            t0 = p0 * ow
            t1 = p1 * ow
            lo_t = min(max(t0, -shift), t1)  # flat output positions reading inside the plane
            hi_t = max(min(t1, h * w - shift), lo_t)
            for t in range(lo_t - t0):
                col[row, t] = 0
            d0 = max(lo_t - t0, 0)
            s1 = max(lo_t + shift, 0)
            for t in range(hi_t - lo_t):
                col[row, d0 + t] = flat[c, s1 + t]
            for t in range(t1 - hi_t):
                col[row, max(hi_t - t0, 0) + t] = 0
            for p in range(p0, p1):
                base = max((p - p0) * ow, 0)
                for q in range(q0):
                    col[row, base + q] = 0
                for q in range(ow - q1):
                    col[row, base + q1 + q] = 0
            continue
        for p in range(p0, p1):
            ih = p * sh + i * dh - ph
            base = max((p - p0) * ow, 0)
            if ih < 0 or ih >= h:
                for q in range(ow):
                    col[row, base + q] = 0
                continue
            for q in range(q0):
                col[row, base + q] = 0
            for q in range(ow - q1):
                col[row, base + q1 + q] = 0
            d0 = max(base + q0, 0)
            if sw == 1:
                for q in range(q1 - q0):
                    col[row, d0 + q] = x[c, ih, s0 + q]
            elif sw == 2:
                for q in range(q1 - q0):
                    col[row, d0 + q] = x[c, ih, s0 + 2 * q]
            else:
                for q in range(q1 - q0):
                    col[row, d0 + q] = x[c, ih, s0 + q * sw]


_im2col_serial = im2col.serial
#: Bytes of im2col columns per tile: the tile stays in the worker's L2 between its im2col and
#: its GEMM (0.5 MB measured best of 0.25 / 0.5 / 1 MB on ResNet and Inception shapes).
TILE_BYTES = 512 << 10


@numba.njit(cache=True, inline="always")
def _tile_columns(x: Any, colbuf: Any, t: int, ntiles: int, rows: int, cg: int, kh: int,
                  kw: int, sh: int, sw: int, ph: int, pw: int, dh: int, dw: int, oh: int,
                  ow: int) -> Any:  # pragma: no cover
    """Task ``t`` of the tiled im2col kernels: its group k and output rows [p0, p1) (nn
    columns), unfolded into the worker's slice of ``colbuf``; returns (k, p0, p1, nn, col)."""
    k_ = cg * kh * kw
    k = t // ntiles
    p0 = (t % ntiles) * rows
    p1 = min(oh, p0 + rows)
    nn = (p1 - p0) * ow
    col = colbuf[numba.get_thread_id(), :k_ * nn].reshape(k_, nn)
    _im2col_serial(x, col, k * cg, cg, kh, kw, sh, sw, ph, pw, dh, dw, p0, p1, ow)
    return k, p0, p1, nn, col


@numba.njit(parallel=True, cache=True, error_model="numpy")
def im2col_tiles(x: Any, colbuf: Any, w: Any, y: Any, bias: Any, has_bias: bool, res: Any,
                 has_res: bool, act: int, lo: Any, hi: Any, cg: int, g: int, mg: int, kh: int,
                 kw: int, sh: int, sw: int, ph: int, pw: int, dh: int, dw: int, oh: int,
                 ow: int, rows: int, ntiles: int) -> None:  # pragma: no cover
    """One image's Conv as im2col + GEMM in tiles of ``rows`` output rows, each tile a pool
    task: its columns go to the worker's slice of ``colbuf`` ([threads, K*rows*ow]), the
    worker's single-threaded sgemm writes y[:, tile] (y is [M, OH*OW], w [M, K]) and
    :func:`pool.bias_act_rows` applies bias, residual and activation, all while the tile is in
    that core's cache. The whole [K, OH*OW] column matrix is never written (7.4 MB for a
    ResNet stem)."""
    k_ = cg * kh * kw
    m_ = g * mg
    n_all = oh * ow
    for t in numba.prange(g * ntiles):
        k, p0, p1, nn, col = _tile_columns(x, colbuf, t, ntiles, rows, cg, kh, kw, sh, sw, ph,
                                           pw, dh, dw, oh, ow)
        sgemm(101, 111, 111, mg, nn, k_, np.float32(1.0), w.ctypes.data + 4 * k * mg * k_, k_,
              col.ctypes.data, nn, np.float32(0.0),
              y.ctypes.data + 4 * (k * mg * n_all + p0 * ow), n_all)
        if has_bias or has_res or act != 0:
            bias_act_rows(y, k * mg, (k + 1) * mg, p0 * ow, p1 * ow, bias, has_bias, res,
                          has_res, act, lo, hi, m_)


_mk_serial = microkernel.gemm.serial


@numba.njit(parallel=True, cache=True, error_model="numpy")
def im2col_mk_tiles(x: Any, colbuf: Any, pw_: int, py: int, pbias: int, pres: int, lo: Any,
                    hi: Any, cg: int, g: int, mg: int, kh: int, kw: int, sh: int, sw: int,
                    ph: int, pw: int, dh: int, dw: int, oh: int, ow: int, rows: int,
                    ntiles: int) -> None:  # pragma: no cover
    """One image's Conv in tiles of ``rows`` output rows as :func:`im2col_tiles`, each tile's
    GEMM through the register-tiled micro-kernel (``microkernel.gemm``, serial inside the
    task) with bias, residual (``pres`` 0: none) and relu/clip in its store. Addresses in
    bytes: weights [M, K], y and the residual [M, OH*OW], bias [M] (float32)."""
    k_ = cg * kh * kw
    n_all = oh * ow
    for t in numba.prange(g * ntiles):
        k, p0, _, nn, col = _tile_columns(x, colbuf, t, ntiles, rows, cg, kh, kw, sh, sw, ph,
                                          pw, dh, dw, oh, ow)
        off = 4 * (k * mg * n_all + p0 * ow)
        _mk_serial(pw_ + 4 * k * mg * k_, k_, col.ctypes.data, nn, py + off, n_all, mg, nn, k_,
                   pbias + 4 * k * mg, False, pres + off if pres != 0 else 0, n_all, lo, hi,
                   1)


@numba.njit(cache=True, inline="always")
def _act1(v: Any, act: int, lo: Any, hi: Any) -> Any:  # pragma: no cover
    """One value through the fused activation (0 none, 1 relu, 2 clip, 3 sigmoid, 4 tanh)."""
    if act == 0:
        return v
    if act == 1:
        return v if not (v < 0) else v - v
    if act == 2:
        return lo if v < lo else (hi if v > hi else v)
    if act == 3:
        return 1 / (1 + np.exp(-v))
    return np.tanh(v)


@dual(fastmath={"contract"})
def depthwise_padded(x: Any, wt: Any, bias: Any, has_bias: bool, y: Any, sh: int, sw: int,
                     ph: int, pw: int, dh: int, dw: int, act: int, lo: Any,
                     hi: Any) -> None:  # pragma: no cover
    """Depthwise conv with bias and activation in one pass per (n, c) plane.

    The plane is first copied into a zero-padded scratch, so every tap's inner loop is
    branch-free; a row accumulator takes the bias first and the activation last. Per-tap
    bounds arithmetic of the unpadded loop cost more than the multiply-adds at MobileNet sizes.

    Without dilation the scratch is split by stride phase: ``sh*sw`` planes with
    ``P[a*sw + b][r, k] = xpad[r*sh + a, k*sw + b]``, so tap (i, j) reads plane
    ``(i % sh, j % sw)`` at offset ``(i // sh, j // sw)``: unit-stride for any stride. Each tap
    is then ONE loop over the flattened phase plane (windows that wrap across rows land only in
    columns never extracted), which vectorises; stride 2 no longer gathers.
    """
    n_, c_, h, w = x.shape
    oh, ow = y.shape[2], y.shape[3]
    kh, kw = wt.shape[2], wt.shape[3]
    hp = (oh - 1) * sh + (kh - 1) * dh + 1
    wp = (ow - 1) * sw + (kw - 1) * dw + 1
    zero = lo - lo
    s0 = max(0, pw)
    s1 = min(wp, w + pw)
    if kh == 1 and kw == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0 and \
            oh == h and ow == w:
        # a per-channel scale and shift (a standalone BatchNorm): one pass, no padded copy
        for nc in numba.prange(n_ * c_):
            n = nc // c_
            c = nc % c_
            k0 = wt[c, 0, 0, 0]
            b = bias[c] if has_bias else zero
            for p in range(oh):
                for q in range(ow):
                    y[n, c, p, q] = _act1(x[n, c, p, q] * k0 + b, act, lo, hi)
        return
    if dh == 1 and dw == 1:
        prow = -(-hp // sh)  # rows and columns of one phase plane
        pcol = -(-wp // sw)
        total = (oh - 1) * pcol + ow
        nph = sh * sw
        # tap (i, j) reads phase plane tph[i*kw + j] from flat offset toff[...] (>= 0)
        tph = np.empty(kh * kw, np.int64)
        toff = np.empty(kh * kw, np.int64)
        for i in range(kh):
            for j in range(kw):
                tph[i * kw + j] = (i % sh) * sw + j % sw
                toff[i * kw + j] = (i // sh) * pcol + j // sw
        # the phase planes and accumulator are allocated once per chunk of planes, not per
        # plane: every plane writes the same interior, so the zero padding stays zero
        planes_all = n_ * c_
        nchunk = min(planes_all, 8)
        # the tap loops run to a multiple of 16 (the phase planes get that much slack): a
        # scalar remainder of up to 15 positions cost more than the vector body on 7x7 and
        # 14x14 planes (960x7x7: 76.8 -> 52.7 us in a trial kernel)
        tpad = (total + 15) // 16 * 16
        for chunk in numba.prange(nchunk):
            planes = np.zeros((nph, prow * pcol + 16), x.dtype)
            accf = np.empty(tpad, x.dtype)
            for nc in range(chunk * planes_all // nchunk, (chunk + 1) * planes_all // nchunk):
                n = nc // c_
                c = nc % c_
                for r in range(hp):
                    ih = r - ph
                    if ih < 0 or ih >= h:
                        continue
                    a = (r % sh) * sw
                    rbase = (r // sh) * pcol
                    for bcol in range(sw):
                        # padded columns k*sw + bcol inside [s0, s1): k in [k0, k1)
                        k0 = (s0 - bcol + sw - 1) // sw if s0 > bcol else 0
                        k1 = (s1 - 1 - bcol) // sw + 1 if s1 > bcol else 0
                        # indices written base + loop counter with a base LLVM can see is >= 0
                        # (max(.., 0)): no wraparound select, so the copies vectorise
                        dst0 = max(rbase + k0, 0)
                        src0 = max(k0 * sw + bcol - pw, 0)
                        if sw == 1:
                            for k in range(k1 - k0):
                                planes[a + bcol, dst0 + k] = x[n, c, ih, src0 + k]
                        elif sw == 2:
                            for k in range(k1 - k0):
                                planes[a + bcol, dst0 + k] = x[n, c, ih, src0 + 2 * k]
                        else:
                            for k in range(k1 - k0):
                                planes[a + bcol, dst0 + k] = x[n, c, ih, src0 + k * sw]
                b = bias[c] if has_bias else zero
                if kh == 3 and kw == 3:  # all nine taps in one pass: the accumulator stays put
                    p0, p1, p2, p3, p4 = tph[0], tph[1], tph[2], tph[3], tph[4]
                    p5, p6, p7, p8 = tph[5], tph[6], tph[7], tph[8]
                    o0, o1, o2 = max(toff[0], 0), max(toff[1], 0), max(toff[2], 0)
                    o3, o4, o5 = max(toff[3], 0), max(toff[4], 0), max(toff[5], 0)
                    o6, o7, o8 = max(toff[6], 0), max(toff[7], 0), max(toff[8], 0)
                    k0, k1, k2 = wt[c, 0, 0, 0], wt[c, 0, 0, 1], wt[c, 0, 0, 2]
                    k3, k4, k5 = wt[c, 0, 1, 0], wt[c, 0, 1, 1], wt[c, 0, 1, 2]
                    k6, k7, k8 = wt[c, 0, 2, 0], wt[c, 0, 2, 1], wt[c, 0, 2, 2]
                    for t in range(tpad):
                        accf[t] = (b + k0 * planes[p0, o0 + t] + k1 * planes[p1, o1 + t]
                                   + k2 * planes[p2, o2 + t] + k3 * planes[p3, o3 + t]
                                   + k4 * planes[p4, o4 + t] + k5 * planes[p5, o5 + t]
                                   + k6 * planes[p6, o6 + t] + k7 * planes[p7, o7 + t]
                                   + k8 * planes[p8, o8 + t])
                else:
                    for t in range(tpad):
                        accf[t] = b
                    for tap in range(kh * kw):
                        wv = wt[c, 0, tap // kw, tap % kw]
                        pp, oo = tph[tap], max(toff[tap], 0)
                        for t in range(tpad):
                            accf[t] += wv * planes[pp, oo + t]
                for p in range(oh):
                    base = max(p * pcol, 0)
                    for q in range(ow):
                        y[n, c, p, q] = _act1(accf[base + q], act, lo, hi)
        return
    for nc in numba.prange(n_ * c_):
        n = nc // c_
        c = nc % c_
        xp = np.zeros((hp, wp), x.dtype)
        for r in range(hp):
            ih = r - ph
            if 0 <= ih < h and s1 > s0:
                xp[r, s0:s1] = x[n, c, ih, s0 - pw:s1 - pw]
        b = bias[c] if has_bias else zero
        acc = np.empty(ow, x.dtype)
        span = (ow - 1) * sw + 1
        for p in range(oh):
            for q in range(ow):
                acc[q] = b
            for i in range(kh):
                row = xp[p * sh + i * dh]
                for j in range(kw):
                    wv = wt[c, 0, i, j]
                    # a view per tap, indexed with the loop counter: no negative-index check
                    tap = row[j * dw:j * dw + span:sw]
                    for q in range(ow):
                        acc[q] += wv * tap[q]
            for q in range(ow):
                y[n, c, p, q] = _act1(acc[q], act, lo, hi)


@dual(fastmath={"contract"})
def depthwise_cl(x: Any, wt: Any, bias: Any, has_bias: bool, y: Any, xp: Any, sh: int,
                 sw: int, ph: int, pw: int, dh: int, dw: int, act: int, lo: Any,
                 hi: Any) -> None:  # pragma: no cover
    """Depthwise conv through a channels-last padded copy: the inner loop runs over channels.

    For deep, small planes (MobileNet's 14x14 and 7x7 stages with 384-960 channels) a per-plane
    loop is all overhead; here each output pixel accumulates a whole channel vector per tap
    (contiguous, vectorised), and the result is stored back to NCHW with bias and activation.
    ``xp`` is the [hp, wp, C] workspace (the shared scratch: a run allocates no plane).
    """
    n_, c_, h, w = x.shape
    oh, ow = y.shape[2], y.shape[3]
    kh, kw = wt.shape[2], wt.shape[3]
    hp = (oh - 1) * sh + (kh - 1) * dh + 1
    wp = (ow - 1) * sw + (kw - 1) * dw + 1
    wk = np.empty((kh, kw, c_), x.dtype)
    for ch in range(c_):
        for i in range(kh):
            for j in range(kw):
                wk[i, j, ch] = wt[ch, 0, i, j]
    b = np.zeros(c_, x.dtype)
    if has_bias:
        for ch in range(c_):
            b[ch] = bias[ch]
    s0 = max(0, pw)
    s1 = min(wp, w + pw)
    for n in range(n_):
        xp[:] = 0
        for r in range(hp):
            ih = r - ph
            if 0 <= ih < h and s1 > s0:
                for k in range(s1 - s0):
                    for ch in range(c_):
                        xp[r, s0 + k, ch] = x[n, ch, ih, s0 - pw + k]
        # whole-array indexing, only ch varying inside: no view per (pixel, tap), whose
        # reference counting cost more than the multiply-adds on 7x7 and 14x14 planes
        for p in numba.prange(oh):
            acc = np.empty((ow, c_), x.dtype)
            for q in range(ow):
                for ch in range(c_):
                    acc[q, ch] = b[ch]
                for i in range(kh):
                    r = p * sh + i * dh
                    for j in range(kw):
                        col = q * sw + j * dw
                        for ch in range(c_):
                            acc[q, ch] += wk[i, j, ch] * xp[r, col, ch]
            for ch in range(c_):
                for q in range(ow):
                    y[n, ch, p, q] = _act1(acc[q, ch], act, lo, hi)


# ---- Winograd --------------------------------------------------------------------------------

def _winograd_matrices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B^T [a,a], G [a,3], A^T [m,a]) of F(m x m, 3 x 3), a = m + 2 (Lavin & Gray)."""
    if m == 2:
        bt = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
        g = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
        at = [[1, 1, 1, 0], [0, 1, -1, -1]]
    elif m == 4:
        bt = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
              [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
        g = [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
             [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]
        at = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
              [0, 1, -1, 8, -8, 1]]
    else:  # pragma: no cover - only F2 and F4 are offered
        raise ValueError(f"no Winograd F({m}x{m},3x3)")
    return np.array(bt, np.float64), np.array(g, np.float64), np.array(at, np.float64)


def winograd_weights(w: np.ndarray, m: int) -> np.ndarray:
    """U[a*a, C, M] = (G w[M, C] G^T) per tap pair, in w's dtype (computed in float64)."""
    _, g, _ = _winograd_matrices(m)
    a = m + 2
    mo, c = w.shape[0], w.shape[1]
    out = np.empty((a * a, c, mo), w.dtype)
    step = max(1, (4 << 20) // max(1, c * a * a * 8))  # output channels per ~4 MB float64 block
    for o in range(0, mo, step):  # blocks: the float64 transient of a 512x512 layer was 75 MB
        u = g @ w[o:o + step].astype(np.float64) @ g.T  # [block, C, a, a]
        out[:, :, o:o + step] = u.transpose(2, 3, 1, 0).reshape(a * a, c, -1)
    return out


# float32 constants: an int literal times a float32 would make numba compute in float64
_F0, _F2, _F4, _F5, _F8 = np.float32(0), np.float32(2), np.float32(4), np.float32(5), np.float32(8)
_TW = transpose.W  #: the register transpose's tile edge


@dual(fastmath={"contract"})
def winograd_pack(x: Any, xp: Any, ph: int, pw: int) -> None:  # pragma: no cover
    """xp[r + ph, q + pw, c] = x[c, r, q]; the rest of xp (the padding) zero. Channels last,
    so the transforms below run down contiguous channel vectors."""
    c_, h, w = x.shape
    hp, wp = xp.shape[0], xp.shape[1]
    # float32 with unit column stride: W x W register transposes (transpose.py)
    fast = x.itemsize == 4 and x.strides[2] == 4 and xp.strides[2] == 4 and \
        xp.strides[1] == 4 * c_
    for r in numba.prange(hp):
        row = xp[r]
        ir = r - ph
        if ir < 0 or ir >= h:
            row[:, :] = 0
            continue
        if fast:
            for q in range(pw):
                for c in range(c_):
                    row[q, c] = 0
            for q in range(pw + w, wp):
                for c in range(c_):
                    row[q, c] = 0
            sb = x.ctypes.data + ir * x.strides[1]
            db = xp.ctypes.data + r * xp.strides[0] + pw * xp.strides[1]
            for c0 in range(0, c_, _TW):
                nr = min(_TW, c_ - c0)
                for q0 in range(0, w, _TW):
                    transpose.plain(sb + c0 * x.strides[0] + 4 * q0, x.strides[0] // 4,
                                    db + 4 * (q0 * c_ + c0), c_, nr, min(_TW, w - q0), 0, 0, 0,
                                    _F0, _F0)
            continue
        for q in range(wp):
            iq = q - pw
            dst = row[q]
            if iq < 0 or iq >= w:
                for c in range(c_):
                    dst[c] = 0
            else:
                src = x[:, ir, iq]
                for c in range(c_):
                    dst[c] = src[c]


@dual(fastmath={"contract"})
def winograd_input(xp: Any, v: Any, m: int, tw: int) -> None:  # pragma: no cover
    """v[i*a + j, ti*tw + tj, :] = (B^T d B)[i, j] for the a x a patch d of tile (ti, tj) of
    the channels-last padded input ``xp`` [HP, WP, C]: B^T down the patch's columns into
    ``t``, then along its rows, as vector operations over the channels. Arrays are indexed
    whole (no views made inside the loops: a view costs reference counting, which at 64
    channels cost more than the arithmetic); only ``c`` varies in the inner loops."""
    hp, _, c_ = xp.shape
    a = m + 2
    th = (hp - 2) // m
    for ti in numba.prange(th):
        t = np.empty((a, a, c_), xp.dtype)  # t[i, j] = (B^T d)[i, j]
        r0 = ti * m
        for tj in range(tw):
            q0, tile = tj * m, ti * tw + tj
            for j in range(a):
                q = q0 + j
                if m == 2:
                    for c in range(c_):
                        d1, d2 = xp[r0 + 1, q, c], xp[r0 + 2, q, c]
                        t[0, j, c] = xp[r0, q, c] - d2
                        t[1, j, c] = d1 + d2
                        t[2, j, c] = d2 - d1
                        t[3, j, c] = d1 - xp[r0 + 3, q, c]
                else:
                    for c in range(c_):
                        e1, e2 = xp[r0 + 1, q, c], xp[r0 + 2, q, c]
                        e3, e4 = xp[r0 + 3, q, c], xp[r0 + 4, q, c]
                        t[0, j, c] = _F4 * xp[r0, q, c] - _F5 * e2 + e4
                        t[1, j, c] = -_F4 * (e1 + e2) + e3 + e4
                        t[2, j, c] = _F4 * (e1 - e2) - e3 + e4
                        t[3, j, c] = _F2 * (e3 - e1) - e2 + e4
                        t[4, j, c] = _F2 * (e1 - e3) - e2 + e4
                        t[5, j, c] = _F4 * e1 - _F5 * e3 + xp[r0 + 5, q, c]
            for i in range(a):
                k = i * a
                if m == 2:
                    for c in range(c_):
                        s1, s2 = t[i, 1, c], t[i, 2, c]
                        v[k, tile, c] = t[i, 0, c] - s2
                        v[k + 1, tile, c] = s1 + s2
                        v[k + 2, tile, c] = s2 - s1
                        v[k + 3, tile, c] = s1 - t[i, 3, c]
                else:
                    for c in range(c_):
                        e1, e2, e3, e4 = t[i, 1, c], t[i, 2, c], t[i, 3, c], t[i, 4, c]
                        v[k, tile, c] = _F4 * t[i, 0, c] - _F5 * e2 + e4
                        v[k + 1, tile, c] = -_F4 * (e1 + e2) + e3 + e4
                        v[k + 2, tile, c] = _F4 * (e1 - e2) - e3 + e4
                        v[k + 3, tile, c] = _F2 * (e3 - e1) - e2 + e4
                        v[k + 4, tile, c] = _F2 * (e1 - e3) - e2 + e4
                        v[k + 5, tile, c] = _F4 * e1 - _F5 * e3 + t[i, 5, c]


@dual(fastmath={"contract"})
def winograd_output(mm: Any, y: Any, m: int, bias: Any, has_bias: bool, act: int, lo: Any,
                    hi: Any, tw: int, res: Any, has_res: bool,
                    fast: bool) -> None:  # pragma: no cover
    """y[o, ti*m + i, tj*m + s] = act((A^T M A)[i, s] + bias[o]) for M = mm[:, tile, o]
    (``mm`` [a*a, tiles, M], output channels last), clipped to the output; vector operations
    over the output channels (whole-array indexing, no views in the loops) into a buffer of
    the tile row, then stored row by row into NCHW. ``fast`` (float32, C-contiguous ``y`` and
    ``res``, ``bias`` of M values, the activation a clamp to [lo, hi]): that store through
    ``transpose.py``'s register transposes."""
    m_, oh, ow = y.shape
    a = m + 2
    th = -(-oh // m)
    for ti in numba.prange(th):
        t = np.empty((m, a, m_), y.dtype)  # t[i, j] = (A^T M)[i, j]
        out = np.empty((m, tw * m, m_), y.dtype)  # the tile row's outputs, channels last
        for tj in range(tw):
            tile = ti * tw + tj
            for j in range(a):
                if m == 2:
                    for c in range(m_):
                        r1, r2 = mm[a + j, tile, c], mm[2 * a + j, tile, c]
                        t[0, j, c] = mm[j, tile, c] + r1 + r2
                        t[1, j, c] = r1 - r2 - mm[3 * a + j, tile, c]
                else:
                    for c in range(m_):
                        e1, e2 = mm[a + j, tile, c], mm[2 * a + j, tile, c]
                        e3, e4 = mm[3 * a + j, tile, c], mm[4 * a + j, tile, c]
                        p, q = e1 + e2, e1 - e2
                        s, d = e3 + e4, e3 - e4
                        t[0, j, c] = mm[j, tile, c] + p + s
                        t[1, j, c] = q + _F2 * d
                        t[2, j, c] = p + _F4 * s
                        t[3, j, c] = q + _F8 * d + mm[5 * a + j, tile, c]
            q0 = tj * m
            for i in range(m):
                if m == 2:
                    for c in range(m_):
                        s1, s2 = t[i, 1, c], t[i, 2, c]
                        out[i, q0, c] = t[i, 0, c] + s1 + s2
                        out[i, q0 + 1, c] = s1 - s2 - t[i, 3, c]
                else:
                    for c in range(m_):
                        e1, e2, e3, e4 = t[i, 1, c], t[i, 2, c], t[i, 3, c], t[i, 4, c]
                        p, q = e1 + e2, e1 - e2
                        s, d = e3 + e4, e3 - e4
                        out[i, q0, c] = t[i, 0, c] + p + s
                        out[i, q0 + 1, c] = q + _F2 * d
                        out[i, q0 + 2, c] = p + _F4 * s
                        out[i, q0 + 3, c] = q + _F8 * d + t[i, 5, c]
        # then into NCHW
        for i in range(m):
            row = ti * m + i
            if row >= oh:
                break
            if fast:  # W x W register transposes, the epilogue on the transposed vectors
                ob = out.ctypes.data + 4 * i * (tw * m) * m_
                yb = y.ctypes.data + 4 * row * ow
                rb = res.ctypes.data + 4 * row * ow
                for c0 in range(0, m_, _TW):
                    nc = min(_TW, m_ - c0)
                    for col0 in range(0, ow, _TW):
                        nr = min(_TW, ow - col0)
                        src = ob + 4 * (col0 * m_ + c0)
                        dst = 4 * (c0 * oh * ow + col0)
                        if has_res:
                            transpose.epilogue_res(src, m_, yb + dst, oh * ow, nr, nc,
                                                   bias.ctypes.data + 4 * c0, rb + dst, oh * ow,
                                                   lo, hi)
                        else:
                            transpose.epilogue(src, m_, yb + dst, oh * ow, nr, nc,
                                               bias.ctypes.data + 4 * c0, 0, 0, lo, hi)
                continue
            # per output pixel, a contiguous run of channels from the row buffer stored with
            # the output's channel stride; bias and activation on the way
            for col in range(ow):
                if has_res:  # a fused residual (res [M, OH, OW]) before the activation
                    for c in range(m_):
                        v = out[i, col, c] + res[c, row, col]
                        y[c, row, col] = _act1(v + bias[c] if has_bias else v, act, lo, hi)
                elif has_bias:
                    for c in range(m_):
                        y[c, row, col] = _act1(out[i, col, c] + bias[c], act, lo, hi)
                else:
                    for c in range(m_):
                        y[c, row, col] = _act1(out[i, col, c], act, lo, hi)


# ---- direct (implicit GEMM) for stems ---------------------------------------------------------

_B1, _B2, _B3 = (microkernel._tile(v, False, False, "b") for v in (1, 2, 3))
_BR1, _BR2, _BR3 = (microkernel._tile(v, True, False, "b") for v in (1, 2, 3))
_MW = microkernel.W


@numba.njit(cache=True, inline="always")
def _direct_tile(a: int, k: int, b: int, c: int, ldc: int, mr: int, nr: int, pb: int,
                 r: int, lo: Any, hi: Any, poff: int) -> None:  # pragma: no cover
    if r != 0:
        if nr > 2 * _MW:
            _BR3(a, k, b, 0, c, ldc, k, mr, nr, pb, r, ldc, lo, hi, poff)
        elif nr > _MW:
            _BR2(a, k, b, 0, c, ldc, k, mr, nr, pb, r, ldc, lo, hi, poff)
        else:
            _BR1(a, k, b, 0, c, ldc, k, mr, nr, pb, r, ldc, lo, hi, poff)
    elif nr > 2 * _MW:
        _B3(a, k, b, 0, c, ldc, k, mr, nr, pb, 0, 0, lo, hi, poff)
    elif nr > _MW:
        _B2(a, k, b, 0, c, ldc, k, mr, nr, pb, 0, 0, lo, hi, poff)
    else:
        _B1(a, k, b, 0, c, ldc, k, mr, nr, pb, 0, 0, lo, hi, poff)


@dual()
def phase_split(x: Any, planes: Any, ph: int, pw: int, sh: int, sw: int) -> None:
    """planes[c, a * sw + b, r, t] = x[c, r * sh + a - ph, t * sw + b - pw] where that is
    inside x (the rest of ``planes`` is the zero padding, written once by the caller)."""
    c_, h, w = x.shape
    prow, pcol = planes.shape[2], planes.shape[3]
    for c in numba.prange(c_):
        for a in range(sh):
            for bb in range(sw):
                ph_ = a * sw + bb
                for r in range(prow):
                    ih = r * sh + a - ph
                    if ih < 0 or ih >= h:
                        continue
                    # t with 0 <= t * sw + bb - pw < w
                    t0 = max(0, (pw - bb + sw - 1) // sw)
                    t1 = min(pcol, (w - 1 + pw - bb) // sw + 1)
                    s0 = max(t0 * sw + bb - pw, 0)
                    d0 = max(t0, 0)
                    if sw == 1:
                        for t in range(t1 - t0):
                            planes[c, ph_, r, d0 + t] = x[c, ih, s0 + t]
                    elif sw == 2:
                        for t in range(t1 - t0):
                            planes[c, ph_, r, d0 + t] = x[c, ih, s0 + 2 * t]
                    else:
                        for t in range(t1 - t0):
                            planes[c, ph_, r, d0 + t] = x[c, ih, s0 + t * sw]


@dual()
def direct_mk(pa: int, k: int, pplanes: int, pcol: int, poff: int, py: int, pbias: int,
              pr: int, m: int, oh: int, ow: int, lo: Any, hi: Any,
              tasks: int) -> None:  # pragma: no cover
    """One image as an implicit GEMM on NCHW: tiles of 8 output channels x 48 pixels of one
    output row; row k of the tile's B (tap (i, j) of channel c) is 48 consecutive values of
    that tap's stride phase plane, ``off[k]`` from the row's base, so nothing is copied into
    columns. Task t takes a share of the output rows."""
    nmb = (m + microkernel.MR - 1) // microkernel.MR
    npx = oh * ow
    # each task sweeps its rows once per panel of 8 output channels, so its stores run down
    # 8 output planes in order: with the panel loop innermost a task wrote 48 pixels into
    # every one of M planes in turn, and the stores missed in all of them once the output
    # had left the caches (ResNet-50's stem after the model's other layers: 1134 -> 834 us;
    # its input tiles are re-read from L2 instead, 735 -> 772 us hot)
    for t in numba.prange(tasks):
        for mb in range(nmb):
            m0 = mb * microkernel.MR
            mr = min(microkernel.MR, m - m0)
            for p in range(t * oh // tasks, (t + 1) * oh // tasks):
                for q0 in range(0, ow, microkernel.NR):
                    nr = min(microkernel.NR, ow - q0)
                    b = pplanes + 4 * (p * pcol + q0)
                    off = 4 * (m0 * npx + p * ow + q0)
                    _direct_tile(pa + 4 * m0 * k, k, b, py + off, npx, mr, nr,
                                 pbias + 4 * m0, pr + off if pr != 0 else 0, lo, hi, poff)


def _build_direct(geo: Geom, act: int, lo: Any, hi: Any, post: Any) -> ConvRun:
    """``direct_mk``: a stem (at most ``DIRECT_CHANNELS`` input channels, group 1) as an
    implicit GEMM: the input split once per run into zero-padded stride-phase planes, then
    the micro-kernel reading each tap's 48 consecutive pixels straight from its plane."""
    f32 = np.float32
    sh, sw = geo.sh, geo.sw
    hp = (geo.oh - 1) * sh + geo.kh
    wp = (geo.ow - 1) * sw + geo.kw
    prow, pcol = -(-hp // sh), -(-wp // sw) + microkernel.NR  # slack: a tile's masked tail
    planes = np.zeros((geo.c, sh * sw, prow, pcol), f32)
    plane = prow * pcol
    offs = np.array([(c * sh * sw + (i % sh) * sw + j % sw) * plane + (i // sh) * pcol + j // sw
                     for c in range(geo.c) for i in range(geo.kh) for j in range(geo.kw)],
                    np.int64)
    k = offs.size
    split = phase_split.pick(geo.c * geo.h * geo.w)
    kernel = direct_mk.pick(geo.macs)
    tasks = max(1, min(numba.get_num_threads() if kernel is direct_mk.parallel else 1, geo.oh))
    clo, chi = microkernel.clamp_bounds(act, float(lo), float(hi))
    after = act not in (0, 1, 2)  # sigmoid / tanh: not a clamp, one pass after
    zero_bias = np.zeros(geo.m, f32)
    img = 4 * geo.m * geo.oh * geo.ow

    bound: list[Any] = [None, None]

    def run_direct(xb: Any, wb: Any, bias: Any, yb: Any, res: Any = None) -> None:
        key = (id(wb), id(bias), id(yb), id(res))
        if bound[0] != key:  # a plan passes the same buffers every run: the addresses once
            w = np.ascontiguousarray(wb, f32)
            b = zero_bias if bias is None else np.ascontiguousarray(bias.reshape(-1), f32)
            if not yb.flags.c_contiguous or (res is not None and not res.flags.c_contiguous):
                raise ValueError("direct_mk needs contiguous output and residual")
            # a copied weight or bias is not kept: its values may change
            copied = not np.may_share_memory(w, wb) or (
                bias is not None and not np.may_share_memory(b, bias))
            bound[0] = None if copied else key
            # (the tuple holds every array whose address it has)
            bound[1] = (w.ctypes.data, b.ctypes.data, yb.ctypes.data,
                        0 if res is None else res.ctypes.data, planes.ctypes.data,
                        offs.ctypes.data, w, b, wb, bias, yb, res, planes, offs)
        pw_, pb, py, pr, pp, po = bound[1][:6]
        for i in range(geo.n):
            split(xb[i], planes, geo.ph, geo.pw, sh, sw)
            kernel(pw_, k, pp, pcol, po, py + i * img, pb, pr + i * img if pr else 0,
                   geo.m, geo.oh, geo.ow, clo, chi, tasks)
        if after:
            post(yb.reshape(geo.n * geo.m, geo.oh * geo.ow), f32(1), zero_bias, NO_BIAS, f32(0),
                 act, lo, hi, geo.m)

    def bind(xb: Any, wb: Any, bias: Any, yb: Any, res: Any = None) -> Callable[[], None] | None:
        """The split and the kernel with their arguments resolved, for one image."""
        plain = [a for a in (wb, yb, res, bias) if a is not None]
        if after or geo.n != 1 or not all(a.flags.c_contiguous and a.dtype == f32
                                          for a in plain):
            return None
        args = (wb.ctypes.data, k, planes.ctypes.data, pcol, offs.ctypes.data, yb.ctypes.data,
                zero_bias.ctypes.data if bias is None else bias.ctypes.data,
                0 if res is None else res.ctypes.data, geo.m, geo.oh, geo.ow, clo, chi, tasks)
        x0 = xb[0]

        def call() -> None:
            split(x0, planes, geo.ph, geo.pw, sh, sw)
            kernel(*args)

        return call

    run_direct.bind = bind  # type: ignore[attr-defined]
    return run_direct


# ---- scratch -----------------------------------------------------------------------------------

class _Scratch(threading.local):
    buf: np.ndarray | None = None


_SCRATCH = _Scratch()


def scratch(nbytes: int) -> np.ndarray:
    """A per-thread uint8 buffer of at least ``nbytes`` (grown, never shrunk); steps of one
    plan run one after another on one thread, so they share it."""
    buf = _SCRATCH.buf
    if buf is None or buf.nbytes < nbytes:
        buf = np.empty(max(nbytes, 64), np.uint8)
        _SCRATCH.buf = buf
    return buf


def _take(buf: np.ndarray, offset: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return buf[offset:offset + n].view(dtype).reshape(shape)


# ---- geometry and planning ---------------------------------------------------------------------

def pads_2d(attrs: dict[str, Any], hw: tuple[int, int], k: tuple[int, int],
            s: tuple[int, int], d: tuple[int, int]) -> tuple[int, int] | None:
    """Top/left padding (bottom/right follow from the planned output shape)."""
    auto = attrs.get("auto_pad", "NOTSET")
    if isinstance(auto, bytes):
        auto = auto.decode()
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin = []
        for i in range(2):
            o = -(-hw[i] // s[i])
            total = max(0, (o - 1) * s[i] + d[i] * (k[i] - 1) + 1 - hw[i])
            begin.append(total // 2 if auto == "SAME_UPPER" else total - total // 2)
        return begin[0], begin[1]
    if auto == "VALID":
        return 0, 0
    pads = list(attrs.get("pads") or [0, 0, 0, 0])
    return (int(pads[0]), int(pads[1])) if len(pads) == 4 else None


@dataclass(frozen=True)
class Geom:
    """Everything a Conv variant needs to know about one call's shapes."""

    n: int
    c: int
    h: int
    w: int
    m: int
    cg: int
    kh: int
    kw: int
    g: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int
    oh: int
    ow: int
    dtype: np.dtype  # what the kernels compute in (float16 is computed in float32)
    io_dtype: np.dtype  # the buffers' dtype

    @property
    def mg(self) -> int:
        return self.m // self.g

    @property
    def macs(self) -> int:
        return self.n * self.m * self.oh * self.ow * self.cg * self.kh * self.kw

    def variants(self) -> list[str]:
        """The algorithms that can run this conv, the default first."""
        out = []
        f32 = self.dtype == np.float32 and self.io_dtype == np.float32
        if self.cg == 1 and self.mg == 1:
            out += ["depthwise", "depthwise_cl"]
        if (self.kh, self.kw, self.sh, self.sw, self.ph, self.pw) == (1, 1, 1, 1, 0, 0) \
                and (self.oh, self.ow) == (self.h, self.w):
            out.append("pointwise")
            if f32:
                out.append("pointwise_mk")
        out.append("im2col")
        if f32:
            out.append("im2col_mk")
        if f32 and _pool_ready():
            out.append("im2col_tiles")
        if (self.kh, self.kw, self.sh, self.sw, self.dh, self.dw, self.g) == (3, 3, 1, 1, 1, 1, 1):
            out += ["winograd2", "winograd4"]
        if f32 and self.g == 1 and self.c <= DIRECT_CHANNELS and (self.dh, self.dw) == (1, 1) \
                and self.kh * self.kw > 1:
            out.append("direct_mk")
        return out


def geometry(attrs: dict[str, Any], x: TensorSpec, w: TensorSpec, b: TensorSpec | None,
             y: TensorSpec) -> Geom | None:
    """The call's geometry, or None when no numba variant covers it (channels-last Convs are
    ``nhwc.py``'s)."""
    if attrs.get("layout"):
        return None
    io = y.dtype.np
    if len(x.shape) != 4 or len(w.shape) != 4 or len(y.shape) != 4:
        return None
    if io.name not in ("float16", "float32", "float64") or x.dtype.np != io or w.dtype.np != io:
        return None
    if b is not None and (b.dtype.np != io or b.size != w.shape[0]):
        return None
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    g = int(attrs.get("group", 1))
    s = tuple(int(v) for v in (attrs.get("strides") or (1, 1)))
    d = tuple(int(v) for v in (attrs.get("dilations") or (1, 1)))
    if len(s) != 2 or len(d) != 2 or c != cg * g or g < 1 or m % g or y.shape[:2] != (n, m):
        return None
    pads = pads_2d(attrs, (h, wd), (kh, kw), s, d)  # type: ignore[arg-type]
    if pads is None:
        return None
    compute = np.dtype(np.float32) if io.name == "float16" else io
    return Geom(n, c, h, wd, m, cg, kh, kw, g, s[0], s[1], pads[0], pads[1], d[0], d[1],
                y.shape[2], y.shape[3], compute, io)


def _weights_cache(transform: Callable[[np.ndarray], np.ndarray]) -> Callable[[Any], np.ndarray]:
    """``transform(w)``, computed once: reused while ``w`` is the same read-only (constant)
    buffer, or while a writable one still holds the same values (comparing the raw weights
    costs 1/(OH*OW) of the convolution)."""
    memo: list[Any] = [None, None, None]  # buffer, its values (writable only), transform

    def get(wb: Any) -> np.ndarray:
        old = memo[0]
        if old is not None and not wb.flags.writeable and not old.flags.writeable and \
                old.ctypes.data == wb.ctypes.data and old.shape == wb.shape:
            return memo[2]  # type: ignore[no-any-return]  # same constant (we hold it alive)
        if memo[1] is not None and memo[1].shape == wb.shape and np.array_equal(memo[1], wb):
            memo[0] = wb
            return memo[2]  # type: ignore[no-any-return]
        memo[0], memo[2] = wb, transform(wb)
        memo[1] = np.array(wb, copy=True) if wb.flags.writeable else None
        return memo[2]  # type: ignore[no-any-return]

    return get


def _packed_address(k: int, n: int) -> Callable[[Any], int]:
    """The address of B ``[k, n]`` packed in column panels (``microkernel.pack_panels``):
    packed once per constant B, again when a writable B's values change
    (:func:`_weights_cache`), and its address read once per packed array (``ctypes.data``
    costs ~0.8 us a call)."""
    packed = _weights_cache(lambda wb: microkernel.pack_panels(
        np.ascontiguousarray(wb, np.float32).reshape(k, n)))
    last: list[Any] = [None, 0]

    def address(wb: Any) -> int:
        pk = packed(wb)
        if pk is not last[0]:
            last[0], last[1] = pk, pk.ctypes.data
        return last[1]

    return address


def _build(geo: Geom, variant: str, act: int = 0, act_params: tuple[float, ...] = ()
           ) -> ConvRun:
    """The runner of one variant; ``act`` (``matmul.ACTS`` code) is a fused activation applied
    in the same pass as the bias."""
    n, m, g, mg, cg = geo.n, geo.m, geo.g, geo.mg, geo.cg
    kh, kw, oh, ow, h, wd = geo.kh, geo.kw, geo.oh, geo.ow, geo.h, geo.w
    dtype = geo.dtype
    one, zero = dtype.type(1), dtype.type(0)
    lo = dtype.type(act_params[0]) if act_params else zero
    hi = dtype.type(act_params[1]) if len(act_params) > 1 else zero
    post = epilogue.pick(n * m * oh * ow)
    no_bias_vec = np.zeros(1, dtype)

    post_res = bias_act.pick(n * m * oh * ow)
    no_res2 = np.zeros((1, 1), dtype)

    def add_bias(yb: Any, bias: Any, res: Any = None) -> None:
        if res is not None:  # bias, residual and activation in one pass
            b = bias.reshape(-1) if bias is not None else no_bias_vec
            post_res(yb.reshape(n * m, oh * ow), b, bias is not None,
                     res.reshape(n * m, oh * ow), act, lo, hi, m)
        elif bias is not None:
            post(yb.reshape(n * m, oh * ow), one, bias.reshape(-1), COLUMN, one, act, lo, hi, m)
        elif act:
            post(yb.reshape(n * m, oh * ow), one, no_bias_vec, NO_BIAS, zero, act, lo, hi, m)

    if variant in ("depthwise", "depthwise_cl"):
        if variant == "depthwise":
            dw_kernel = depthwise_padded.pick(geo.macs)

            def run_depthwise(xb: Any, wb: Any, bias: Any, yb: Any, res: Any = None) -> None:
                b = bias.reshape(-1) if bias is not None else no_bias_vec
                dw_kernel(xb, wb, b, bias is not None, yb, geo.sh, geo.sw, geo.ph, geo.pw,
                          geo.dh, geo.dw, act if res is None else 0, lo, hi)
                if res is not None:  # the residual goes in before the activation
                    add_bias(yb, None, res)

            def bind_depthwise(xb: Any, wb: Any, bias: Any, yb: Any, res: Any = None
                               ) -> Callable[[], None] | None:
                b = flat_views([bias])
                if res is not None or b is None:
                    return None
                return partial(dw_kernel, xb, wb, b[0] if bias is not None else no_bias_vec,
                               bias is not None, yb, geo.sh, geo.sw,
                               geo.ph, geo.pw, geo.dh, geo.dw, act, lo, hi)

            run_depthwise.bind = bind_depthwise  # type: ignore[attr-defined]
            return run_depthwise
        cl_kernel = depthwise_cl.pick(geo.macs)
        xp_shape = ((oh - 1) * geo.sh + (kh - 1) * geo.dh + 1,
                    (ow - 1) * geo.sw + (kw - 1) * geo.dw + 1, geo.c)
        xp_bytes = int(np.prod(xp_shape)) * dtype.itemsize
        scratch(xp_bytes)  # reserve now, not on the first run

        def run_depthwise_cl(xb: Any, wb: Any, bias: Any, yb: Any, res: Any = None) -> None:
            b = bias.reshape(-1) if bias is not None else no_bias_vec
            xp = _take(scratch(xp_bytes), 0, xp_shape, dtype)
            cl_kernel(xb, wb, b, bias is not None, yb, xp, geo.sh, geo.sw, geo.ph, geo.pw,
                      geo.dh, geo.dw, act if res is None else 0, lo, hi)
            if res is not None:
                add_bias(yb, None, res)

        return run_depthwise_cl

    def gemm_blocks(gemm_k: Any, blocks: list[tuple[Any, Any, int, int]],
                    bias: Any, yb: Any, res: Any) -> tuple[list[Callable[[], None]], bool]:
        """One prepared call per (a, b, i, k) block: y4[i, k] = a @ b with the bias, residual
        and activation in the same call when the GEMM can (the pool's sgemm blocks, see
        ``pool.Gemm.bind``); a block it could not gets them after its GEMM, or, when it is the
        only block, the whole output (``add_bias``: the second value says so)."""
        calls: list[Callable[[], None]] = []
        whole = False
        for a, bcol, i, k in blocks:
            y2 = yb.reshape(n, g, mg, oh * ow)[i, k]
            b1 = bias.reshape(g, mg)[k] if bias is not None else None
            r2 = res.reshape(n, g, mg, oh * ow)[i, k] if res is not None else None
            call, fused = gemm_k.bind(a, bcol, y2, b1, act, lo, hi, r2)
            if fused:
                calls.append(call)
            elif n * g == 1:
                calls.append(call)
                whole = True
            else:
                def call_then_epilogue(call: Callable[[], None] = call, y2: Any = y2,
                                       b1: Any = b1, r2: Any = r2) -> None:
                    call()
                    bias_act_rows(y2, 0, mg, 0, oh * ow,
                                  b1 if b1 is not None else no_bias_vec, b1 is not None,
                                  r2 if r2 is not None else no_res2, r2 is not None, act, lo,
                                  hi, mg)
                calls.append(call_then_epilogue)
        return calls, whole

    if variant == "pointwise":
        gemm_pw = gemm((mg, cg), (cg, h * wd))
        bound_pw: list[Any] = [None, None]  # buffer ids -> the prepared block calls

        def run_pointwise(xb: Any, wb: Any, bias: Any, yb: Any, res: Any = None) -> None:
            key = (id(xb), id(wb), id(bias), id(yb), id(res))
            if bound_pw[0] != key:  # a plan passes the same buffers every run: prepare once
                w3 = wb.reshape(g, mg, cg)
                x4 = xb.reshape(n, g, cg, h * wd)
                # 2-D GEMMs: np.matmul's broadcast batch path is slower
                calls, whole = gemm_blocks(gemm_pw, [(w3[k], x4[i, k], i, k) for i in range(n)
                                                     for k in range(g)], bias, yb, res)
                # the calls hold the buffers, so the ids in the key stay theirs
                bound_pw[0], bound_pw[1] = key, (calls, whole, xb, wb, bias, yb, res)
            calls, whole = bound_pw[1][:2]
            for call in calls:
                call()
            if whole:
                add_bias(yb, bias, res)

        def bind_pointwise(xb: Any, wb: Any, bias: Any, yb: Any, res: Any = None
                           ) -> Callable[[], None] | None:
            """The one sgemm block that also applies the epilogue, as prepared."""
            v = views((wb, (g, mg, cg)), (xb, (n, g, cg, h * wd)))
            if v is None:
                return None
            w3, x4 = v
            calls, whole = gemm_blocks(gemm_pw, [(w3[k], x4[i, k], i, k) for i in range(n)
                                                 for k in range(g)], bias, yb, res)
            if len(calls) == 1 and not whole:
                return calls[0]  # type: ignore[no-any-return]

            def call() -> None:
                for c in calls:
                    c()
                if whole:
                    add_bias(yb, bias, res)

            return call

        run_pointwise.bind = bind_pointwise  # type: ignore[attr-defined]
        return run_pointwise

    if variant == "im2col":
        col_shape = (cg * kh * kw, oh * ow)
        col_bytes = int(np.prod(col_shape)) * dtype.itemsize
        scratch(col_bytes)  # reserve now, not on the first run
        unfold = im2col.pick(int(np.prod(col_shape)))
        gemm_col = gemm((mg, cg * kh * kw), col_shape)
        bound_col: list[Any] = [None, None]  # (scratch, buffer) ids -> col view, block calls

        def run_im2col(xb: Any, wb: Any, bias: Any, yb: Any, res: Any = None) -> None:
            buf = scratch(col_bytes)
            key = (id(buf), id(wb), id(bias), id(yb), id(res))
            if bound_col[0] != key:
                col = _take(buf, 0, col_shape, dtype)
                w3 = wb.reshape(g, mg, cg * kh * kw)
                calls, whole = gemm_blocks(gemm_col, [(w3[k], col, i, k) for i in range(n)
                                                      for k in range(g)], bias, yb, res)
                bound_col[0], bound_col[1] = key, (col, calls, whole, buf, wb, bias, yb, res)
            col, calls, whole = bound_col[1][:3]
            unfold_and_multiply(xb, col, calls, whole, bias, yb, res)

        def unfold_and_multiply(xb: Any, col: Any, calls: list[Callable[[], None]],
                                whole: bool, bias: Any, yb: Any, res: Any) -> None:
            """Each (image, group) block's columns, then its prepared GEMM call."""
            for t, call in enumerate(calls):
                unfold(xb[t // g], col, (t % g) * cg, cg, kh, kw, geo.sh, geo.sw, geo.ph,
                       geo.pw, geo.dh, geo.dw, 0, oh, ow)
                call()
            if whole:
                add_bias(yb, bias, res)

        def bind_im2col(xb: Any, wb: Any, bias: Any, yb: Any, res: Any = None
                        ) -> Callable[[], None] | None:
            """The unfold and the GEMM blocks, prepared again only when the running thread's
            scratch is another buffer."""
            v = views((wb, (g, mg, cg * kh * kw)))
            if v is None:
                return None
            w3 = v[0]
            prepared: list[Any] = [None, None]

            def call() -> None:
                buf = scratch(col_bytes)
                if prepared[0] is not buf:
                    col = _take(buf, 0, col_shape, dtype)
                    prepared[0], prepared[1] = buf, (col, *gemm_blocks(
                        gemm_col, [(w3[k], col, i, k) for i in range(n) for k in range(g)],
                        bias, yb, res))
                unfold_and_multiply(xb, *prepared[1], bias, yb, res)

            return call

        run_im2col.bind = bind_im2col  # type: ignore[attr-defined]
        return run_im2col

    if variant in ("pointwise_mk", "im2col_mk"):
        return _build_mk(geo, variant, act, lo, hi, post)
    if variant == "direct_mk":
        return _build_direct(geo, act, lo, hi, post)

    if variant == "im2col_tiles":
        kk = cg * kh * kw
        most = max(1, min(oh, TILE_BYTES // max(kk * ow * dtype.itemsize, 1)))
        rows = balanced_rows(oh, ow, most, numba.get_num_threads(), g)
        ntiles = -(-oh // rows)
        slots = numba.config.NUMBA_NUM_THREADS
        buf_shape = (slots, kk * rows * ow)
        buf_bytes = int(np.prod(buf_shape)) * dtype.itemsize
        scratch(buf_bytes)
        no_res2t = np.zeros((1, 1), dtype)

        def run_im2col_tiles(xb: Any, wb: Any, bias: Any, yb: Any, res: Any = None) -> None:
            colbuf = _take(scratch(buf_bytes), 0, buf_shape, dtype)
            w2 = wb.reshape(m, kk)
            b = bias.reshape(-1) if bias is not None else no_bias_vec
            for i in range(n):
                y2 = yb[i].reshape(m, oh * ow)
                r2 = res[i].reshape(m, oh * ow) if res is not None else no_res2t
                im2col_tiles(xb[i], colbuf, w2, y2, b, bias is not None, r2, res is not None,
                             act, lo, hi, cg, g, mg, kh, kw, geo.sh, geo.sw, geo.ph, geo.pw,
                             geo.dh, geo.dw, oh, ow, rows, ntiles)

        return run_im2col_tiles

    if variant in ("winograd2", "winograd4"):
        mt = 2 if variant == "winograd2" else 4
        a = mt + 2
        th, tw = -(-oh // mt), -(-ow // mt)
        tiles = th * tw
        v_shape, mm_shape = (a * a, tiles, geo.c), (a * a, tiles, m)
        xp_shape = (th * mt + 2, tw * mt + 2, geo.c)
        v_bytes = int(np.prod(v_shape)) * dtype.itemsize
        mm_bytes = int(np.prod(mm_shape)) * dtype.itemsize
        total = v_bytes + mm_bytes + int(np.prod(xp_shape)) * dtype.itemsize
        scratch(total)
        weights = _weights_cache(lambda wb: winograd_weights(np.asarray(wb), mt))
        pack = winograd_pack.pick(int(np.prod(xp_shape)))
        into = winograd_input.pick(a * a * geo.c * tiles * 4)
        outof = winograd_output.pick(a * a * m * tiles * 2)

        no_res = np.zeros((1, 1, 1), dtype)
        zero_bias = np.zeros(m, dtype)
        gemm_taps = gemm((a * a, tiles, geo.c), (a * a, geo.c, m))
        # float32 relu / clip / none: the output's transposing store applies them as a clamp
        clamp = dtype == np.float32 and act in (0, 1, 2)
        clo, chi = microkernel.clamp_bounds(act, float(lo), float(hi))

        taps_bound: list[Any] = [None, None]  # (scratch, weights) ids -> views, GEMM call

        def run_winograd(xb: Any, wb: Any, bias: Any, yb: Any, res: Any = None) -> None:
            u = weights(wb)
            buf = scratch(total)
            key = (id(buf), id(u))
            if taps_bound[0] != key:
                v = _take(buf, 0, v_shape, dtype)
                mm = _take(buf, v_bytes, mm_shape, dtype)
                xp = _take(buf, v_bytes + mm_bytes, xp_shape, dtype)
                call = gemm_taps.bind(v, u, mm)[0]
                # held with the buffers whose ids are the key
                taps_bound[0], taps_bound[1] = key, (v, mm, xp, call, buf, u)
            v, mm, xp, call = taps_bound[1][:4]
            b = bias.reshape(-1) if bias is not None else zero_bias
            fast = clamp and yb.flags.c_contiguous and b.flags.c_contiguous and \
                (res is None or res.flags.c_contiguous)
            flo, fhi = (clo, chi) if fast else (lo, hi)
            for i in range(n):
                pack(xb[i], xp, geo.ph, geo.pw)
                into(xp, v, mt, tw)
                call()  # [tiles, C] @ [C, M] per tap
                outof(mm, yb[i], mt, b, bias is not None, act, flo, fhi, tw,
                      res[i] if res is not None else no_res, res is not None, fast)

        def bind_winograd(xb: Any, wb: Any, bias: Any, yb: Any, res: Any = None
                          ) -> Callable[[], None] | None:
            """One image with constant weights: U transformed once, the scratch views and
            the taps' GEMM prepared again only if the running thread's scratch differs."""
            if n != 1 or wb.flags.writeable:
                return None
            u = weights(wb)
            b = bias.reshape(-1) if bias is not None else zero_bias
            fast = clamp and yb.flags.c_contiguous and b.flags.c_contiguous and \
                (res is None or res.flags.c_contiguous)
            flo, fhi = (clo, chi) if fast else (lo, hi)
            x0, y0 = xb[0], yb[0]
            r0 = res[0] if res is not None else no_res
            has_bias, has_res = bias is not None, res is not None
            prepared: list[Any] = [None, None]

            def call() -> None:
                buf = scratch(total)
                if prepared[0] is not buf:
                    v = _take(buf, 0, v_shape, dtype)
                    mm = _take(buf, v_bytes, mm_shape, dtype)
                    xp = _take(buf, v_bytes + mm_bytes, xp_shape, dtype)
                    prepared[0], prepared[1] = buf, (v, mm, xp, gemm_taps.bind(v, u, mm)[0])
                v, mm, xp, taps = prepared[1]
                pack(x0, xp, geo.ph, geo.pw)
                into(xp, v, mt, tw)
                taps()
                outof(mm, y0, mt, b, has_bias, act, flo, fhi, tw, r0, has_res, fast)

            return call

        run_winograd.bind = bind_winograd  # type: ignore[attr-defined]
        return run_winograd

    raise ValueError(f"unknown Conv algorithm {variant!r}")


def balanced_rows(oh: int, ow: int, most: int, threads: int, groups: int = 1) -> int:
    """Output rows per tile, from ``most`` down to half of it, that give the pool's busiest
    thread the least work: tiles are split into contiguous runs per thread as numba splits a
    ``prange`` (``groups`` planes of them), a tile costing its pixels in whole vectors of the
    micro-kernel plus one for its launch. 28 rows of 28 in tiles of 8 gave one core 16 rows
    and the other 12; in tiles of 7 each gets 14 (ResNet-18's 64->128 3x3/2: 607 -> 542 us).
    """
    if threads <= 1 or most <= 1:
        return max(1, most)
    lanes = microkernel.W

    def worst(r: int) -> int:
        costs = [-(-min(r, oh - p0) * ow // lanes) + 1 for p0 in range(0, oh, r)] * groups
        n = len(costs)
        return max(sum(costs[t * n // threads:(t + 1) * n // threads]) for t in range(threads))

    return min(range(max(1, most // 2), most + 1), key=lambda r: (worst(r), -r))


def _build_mk(geo: Geom, variant: str, act: int, lo: Any, hi: Any, post: Any) -> ConvRun:
    """``pointwise_mk`` / ``im2col_mk``: GEMMs through the register-tiled micro-kernel
    (``microkernel.py``) on the weights as they are, bias, residual and relu/clip applied per
    tile before its one store; sigmoid/tanh after, in one pass. ``im2col_mk`` works in tiles of
    output rows, as ``im2col_tiles`` does: each pool task writes its tile's columns into the
    worker's slice of scratch and runs the micro-kernel on them while they are in its cache,
    so the whole column matrix is never written (a VGG layer's is 115 MB)."""
    n, m, g, mg, cg = geo.n, geo.m, geo.g, geo.mg, geo.cg
    kh, kw, oh, ow = geo.kh, geo.kw, geo.oh, geo.ow
    kk, hw = cg * kh * kw, oh * ow
    f32 = np.float32
    zero_bias = np.zeros(m, f32)
    clo, chi = microkernel.clamp_bounds(act, float(lo), float(hi))
    after = act not in (0, 1, 2)  # sigmoid / tanh: not a clamp
    pointwise = variant == "pointwise_mk"
    kernel = microkernel.gemm.pick(mg * hw * kk)
    if pointwise and g > 1:  # the groups' GEMMs in one launch
        kernel_pw = microkernel.gemm_batched.pick(mg * hw * kk)
    else:
        kernel_pw = kernel
    threads = numba.get_num_threads()
    chunks = threads if kernel is microkernel.gemm.parallel else 1
    # tiles of output rows, at least one per thread, each at most TILE_BYTES of columns
    # (writing small column matrices whole and splitting the GEMM by rows of W instead, so
    # each core reads half the weights, measured 5-35% slower on ResNet-18's 3x3 layers)
    rows = balanced_rows(oh, ow, max(1, min(oh, TILE_BYTES // max(kk * ow * 4, 1),
                                            -(-oh // max(threads, 1)))), threads, g)
    ntiles = -(-oh // rows)
    slots = numba.config.NUMBA_NUM_THREADS
    buf_shape = (slots, kk * rows * ow)
    buf_bytes = int(np.prod(buf_shape)) * 4
    if not pointwise:
        scratch(buf_bytes)  # reserve now, not on the first run
    bound: list[Any] = [None, None]

    def run_mk(xb: Any, wb: Any, bias: Any, yb: Any, res: Any = None) -> None:
        key = (id(xb), id(wb), id(bias), id(yb), id(res))
        if bound[0] != key and not (xb.flags.c_contiguous and yb.flags.c_contiguous and
                                    (res is None or res.flags.c_contiguous)):
            # the kernels take plain rows: strided views go through contiguous stand-ins
            y2 = np.empty(yb.shape, f32)
            run_mk(np.ascontiguousarray(xb, f32), wb, bias, y2,
                   None if res is None else np.ascontiguousarray(res, f32))
            np.copyto(yb, y2)
            return
        if bound[0] != key:  # a plan passes the same buffers every run: the arguments once
            w = np.ascontiguousarray(wb, f32)
            b = zero_bias if bias is None else np.ascontiguousarray(bias.reshape(-1), f32)
            calls: list[tuple[Any, ...]] = []
            for i in range(n):
                r = 0 if res is None else res[i].ctypes.data
                if pointwise and g > 1:  # the groups in one launch
                    calls.append((w.ctypes.data, 4 * mg * kk, kk, xb[i].ctypes.data,
                                  4 * cg * hw, hw, yb[i].ctypes.data, 4 * mg * hw, hw, mg, hw,
                                  kk, b.ctypes.data, 4 * mg, r, clo, chi, chunks, g))
                elif pointwise:
                    calls.append((w.ctypes.data, kk, xb[i].ctypes.data, hw, yb[i].ctypes.data,
                                  hw, mg, hw, kk, b.ctypes.data, False, r, hw, clo, chi,
                                  chunks))
                else:
                    calls.append((xb[i], w.ctypes.data, yb[i].ctypes.data, b.ctypes.data, r))
            # the tuple holds every buffer whose address is in the calls; a copied (not
            # contiguous or not float32) weight or bias is not kept: its values may change
            copied = not np.may_share_memory(w, wb) or (
                bias is not None and not np.may_share_memory(b, bias))
            bound[0] = None if copied else key
            bound[1] = (calls, xb, w, b, yb, res)
        calls = bound[1][0]
        if pointwise:
            for args in calls:
                kernel_pw(*args)
        else:
            colbuf = _take(scratch(buf_bytes), 0, buf_shape, f32)
            for x1, pw_, py, pb, pr in calls:
                im2col_mk_tiles(x1, colbuf, pw_, py, pb, pr, clo, chi, cg, g, mg, kh, kw,
                                geo.sh, geo.sw, geo.ph, geo.pw, geo.dh, geo.dw, oh, ow, rows,
                                ntiles)
        if after:
            post(yb.reshape(n * m, hw), f32(1), zero_bias, NO_BIAS, f32(0), act, lo, hi, m)

    def bind(xb: Any, wb: Any, bias: Any, yb: Any, res: Any = None) -> Callable[[], None] | None:
        """One image's micro-kernel launch with its addresses resolved (the executor keeps
        the buffers alive); None where run_mk copies or post-processes."""
        if after or n != 1:
            return None
        plain = [a for a in (xb, wb, yb, res, bias) if a is not None]
        if not all(a.flags.c_contiguous and a.dtype == f32 for a in plain):
            return None
        r = 0 if res is None else res.ctypes.data
        pb = zero_bias.ctypes.data if bias is None else bias.ctypes.data
        if not pointwise:  # im2col_mk: the scratch is the running thread's, taken per call
            x0 = xb[0]
            args = (wb.ctypes.data, yb.ctypes.data, pb, r, clo, chi, cg, g, mg, kh, kw,
                    geo.sh, geo.sw, geo.ph, geo.pw, geo.dh, geo.dw, oh, ow, rows, ntiles)

            def call_im2col() -> None:
                im2col_mk_tiles(x0, _take(scratch(buf_bytes), 0, buf_shape, f32), *args)

            return call_im2col
        if g > 1:
            return partial(kernel_pw, wb.ctypes.data, 4 * mg * kk, kk, xb.ctypes.data,
                           4 * cg * hw, hw, yb.ctypes.data, 4 * mg * hw, hw, mg, hw, kk, pb,
                           4 * mg, r, clo, chi, chunks, g)
        return partial(kernel_pw, wb.ctypes.data, kk, xb.ctypes.data, hw, yb.ctypes.data, hw,
                       mg, hw, kk, pb, False, r, hw, clo, chi, chunks)

    run_mk.bind = bind  # type: ignore[attr-defined]
    return run_mk


def as_2d(attrs: dict[str, Any], x: TensorSpec, w: TensorSpec, y: TensorSpec
          ) -> tuple[dict[str, Any], TensorSpec, TensorSpec, TensorSpec]:
    """A 1-D Conv ([N, C, L]) as a 2-D one with H = 1 (L stays the contiguous axis)."""
    if len(x.shape) != 3 or len(w.shape) != 3 or len(y.shape) != 3:
        return attrs, x, w, y
    new = dict(attrs)
    for key in ("strides", "dilations", "kernel_shape"):
        if attrs.get(key):
            new[key] = [1, *attrs[key]]
    if attrs.get("pads"):
        p = list(attrs["pads"])
        new["pads"] = [0, *p[:1], 0, *p[1:]]

    def lift(t: TensorSpec) -> TensorSpec:
        return TensorSpec((*t.shape[:2], 1, t.shape[2]), t.dtype)

    return new, lift(x), lift(w), lift(y)


def geometry_nd(attrs: dict[str, Any], x: TensorSpec, w: TensorSpec, b: TensorSpec | None,
                y: TensorSpec) -> Geom | None:
    """:func:`geometry` for 1-D or 2-D convolutions."""
    attrs2, x2, w2, y2 = as_2d(attrs, x, w, y)
    return geometry(attrs2, x2, w2, b, y2)


def plan(attrs: dict[str, Any], x: TensorSpec, w: TensorSpec, b: TensorSpec | None,
         y: TensorSpec, variant: str | None = None) -> ConvRun | None:
    """A runner for this Conv with ``variant`` (None: the default for the shape), or None.

    ``attrs["fused_activation"]`` / ``attrs["fused_act_params"]`` (set by the core's epilogue
    fusion) are applied in the bias pass."""
    activation = attrs.get("fused_activation", "")
    if activation not in ACTS:
        return None
    if len(x.shape) == 3:
        attrs2, x2, w2, y2 = as_2d(attrs, x, w, y)
        inner = plan(attrs2, x2, w2, b, y2, variant)
        if inner is None:
            return None
        x4 = (*x.shape[:2], 1, x.shape[2])
        w4 = (*w.shape[:2], 1, w.shape[2])
        y4 = (*y.shape[:2], 1, y.shape[2])

        def run_1d(xb: Any, wb: Any, bias: Any, yb: Any, res: Any = None) -> None:
            inner(xb.reshape(x4), wb.reshape(w4), bias, yb.reshape(y4),  # type: ignore[call-arg]
                  None if res is None else res.reshape(y4))

        return run_1d
    geo = geometry(attrs, x, w, b, y)
    if geo is None:
        return None
    options = geo.variants()
    if variant is None:
        variant = options[0]
    elif variant not in options:
        return None
    run = _build(geo, variant, ACTS[activation], tuple(attrs.get("fused_act_params", ())))
    if geo.io_dtype == geo.dtype:
        return run
    # float16: compute in float32 (one rounding at the end, like an fp32-accumulating GEMM)
    f32 = np.float32

    def run_upcast(xb: Any, wb: Any, bias: Any, yb: Any, res: Any = None) -> None:
        out = np.empty(yb.shape, f32)
        run(xb.astype(f32), wb.astype(f32), None if bias is None else bias.astype(f32), out,
            None if res is None else res.astype(f32))  # type: ignore[call-arg]
        np.copyto(yb, out, casting="unsafe")

    return run_upcast


# ---- costs ---------------------------------------------------------------------------------------

def _pool_ready() -> bool:
    """The tiled variant calls sgemm on numba's pool (``threads.POOL``)."""
    from walle_backend_numba import threads

    return threads.POOL


def held_bytes(geo: Geom, variant: str) -> int:
    """Memory the variant keeps for the session's life beyond its operands: Winograd's
    transformed weights U, ``[a*a, C, M]`` (F(2x2): a = 4, F(4x4): a = 6); 0 otherwise."""
    if variant not in ("winograd2", "winograd4"):
        return 0
    a = (2 if variant == "winograd2" else 4) + 2
    return a * a * geo.c * geo.m * geo.dtype.itemsize


def analytic_seconds(geo: Geom, variant: str, profile: Any) -> float:
    """Roofline estimate of one variant from the profile's measured rates (before the
    per-variant efficiency measured by calibration)."""
    item = geo.dtype.itemsize
    out_elems = geo.n * geo.m * geo.oh * geo.ow
    ew = max(profile.ew_bytes_s, 1.0)
    copy = max(profile.copy_bytes_s, 1.0)

    def gemm(mm: int, nn: int, kk: int, count: int) -> float:
        flops = 2.0 * mm * nn * kk
        return count * (flops / max(profile.gemm_rate(flops), 1.0) + profile.launch_s * 0.2)

    bias = out_elems * item * 2 / ew
    if variant in ("depthwise", "depthwise_cl"):
        return profile.launch_s + geo.macs * 3 * item / ew
    if variant == "pointwise":
        return profile.launch_s + gemm(geo.mg, geo.oh * geo.ow, geo.cg, geo.n * geo.g) + bias
    if variant == "pointwise_mk":  # the epilogue rides on the store
        return profile.launch_s + gemm(geo.mg, geo.oh * geo.ow, geo.cg, geo.n * geo.g)
    if variant == "im2col_mk":  # tiled as im2col_tiles, the epilogue in the store
        col = geo.cg * geo.kh * geo.kw * geo.oh * geo.ow
        return (profile.launch_s + geo.n * geo.g * col * item / ew
                + gemm(geo.mg, geo.oh * geo.ow, geo.cg * geo.kh * geo.kw, geo.n * geo.g))
    if variant == "im2col":
        col = geo.cg * geo.kh * geo.kw * geo.oh * geo.ow
        return (profile.launch_s + geo.n * geo.g * col * item * 2 / copy
                + gemm(geo.mg, geo.oh * geo.ow, geo.cg * geo.kh * geo.kw, geo.n * geo.g) + bias)
    if variant == "im2col_tiles":
        kk = geo.cg * geo.kh * geo.kw
        rows = max(1, min(geo.oh, TILE_BYTES // max(kk * geo.ow * item, 1)))
        ntiles = math.ceil(geo.oh / rows)
        # columns written and read in cache (at the elementwise rate, not the copy rate), the
        # epilogue in the same pass; GEMMs of a tile's width. Each tile's sgemm packs the
        # group's whole weights again (OpenBLAS packs both operands on every call): on
        # ResNet's 512x512x3x3 layers at 7x7 (9.4 MB of weights, 3 tiles) that copy is most
        # of the 1.7 ms they measure, which the estimate without it put at 0.7 ms, and a
        # first session that had not measured them yet ran them there
        col = geo.cg * geo.kh * geo.kw * geo.oh * geo.ow
        packing = geo.n * geo.g * ntiles * geo.mg * kk * item * 2 / copy
        return (profile.launch_s + geo.n * geo.g * col * item / ew + packing
                + gemm(geo.mg, rows * geo.ow, kk, geo.n * geo.g * ntiles))
    if variant == "direct_mk":  # the stride-phase copy of the input, then the GEMM in place
        return (profile.launch_s + geo.n * geo.c * geo.h * geo.w * item * 2 / ew
                + gemm(geo.m, geo.oh * geo.ow, geo.c * geo.kh * geo.kw, geo.n))
    if variant in ("winograd2", "winograd4"):
        mt = 2 if variant == "winograd2" else 4
        a = mt + 2
        tiles = math.ceil(geo.oh / mt) * math.ceil(geo.ow / mt)
        # transforms: 2*a^3 multiply-adds per tile and channel in, 2*a^2*mt out; ~one FLOP
        # per ew byte moved, and the tiles go through memory once each way
        t_in = geo.n * geo.c * tiles * (a * a * item * 2 + 2 * a**3) / ew
        t_out = geo.n * geo.m * tiles * (a * a * item * 2 + 2 * a * a * mt) / ew
        # the a*a GEMMs are small (tiles x C) and read a*a transformed copies of the weights:
        # on small planes that read, not the multiplies, bounds them
        t_w = geo.n * a * a * geo.c * geo.m * item / copy
        return profile.launch_s + t_in + t_out + max(gemm(tiles, geo.m, geo.c, geo.n * a * a),
                                                     t_w)
    raise ValueError(variant)


#: Representative shapes timed once per machine by calibrate_extra: (name, variant, x, w, pads).
CALIBRATION = (
    ("conv3x3", "im2col", (1, 32, 28, 28), (32, 32, 3, 3), 1),
    ("conv3x3", "im2col_tiles", (1, 32, 28, 28), (32, 32, 3, 3), 1),
    ("conv3x3", "im2col_mk", (1, 32, 28, 28), (32, 32, 3, 3), 1),
    ("conv3x3", "winograd2", (1, 32, 28, 28), (32, 32, 3, 3), 1),
    ("conv3x3", "winograd4", (1, 32, 28, 28), (32, 32, 3, 3), 1),
    ("dw3x3", "depthwise", (1, 64, 28, 28), (64, 1, 3, 3), 1),
    ("dw3x3", "depthwise_cl", (1, 64, 28, 28), (64, 1, 3, 3), 1),
    ("pw", "pointwise", (1, 32, 28, 28), (64, 32, 1, 1), 0),
    ("pw", "pointwise_mk", (1, 32, 28, 28), (64, 32, 1, 1), 0),
    ("stem", "direct_mk", (1, 3, 56, 56), (32, 3, 3, 3), 1),
    # a ResNet-50 14x14 layer's size: from the small shapes alone the efficiency was carried
    # to layers 30x larger, and there the GEMM variants measured 2-3x their estimate
    # (Winograd's efficiency follows the plane's tiles more than its size: not interpolated)
    ("conv3x3_big", "im2col", (1, 256, 14, 14), (256, 256, 3, 3), 1),
    ("conv3x3_big", "im2col_mk", (1, 256, 14, 14), (256, 256, 3, 3), 1),
    ("pw_big", "pointwise", (1, 1024, 14, 14), (256, 1024, 1, 1), 0),
    ("pw_big", "pointwise_mk", (1, 1024, 14, 14), (256, 1024, 1, 1), 0),
)


def calibration_geom(x: tuple[int, ...], w: tuple[int, ...], pad: int) -> Geom:
    n, c, h, wd = x
    m, cg = w[0], w[1]
    g = c // cg
    oh, ow = h + 2 * pad - w[2] + 1, wd + 2 * pad - w[3] + 1
    f32 = np.dtype(np.float32)
    return Geom(n, c, h, wd, m, cg, w[2], w[3], g, 1, 1, pad, pad, 1, 1, oh, ow, f32, f32)


def efficiency(variant: str, profile: Any, geo: Geom | None = None) -> float:
    """measured / analytic for ``variant`` (1.0 when not measured): at its calibration shape,
    or, where it was timed at a small and a large shape, interpolated between the two in
    log(multiply-adds) at ``geo``'s size (clamped outside them)."""
    extra = getattr(profile, "extra", None) or {}
    points = []  # (log macs, efficiency) per calibration shape of this variant
    for name, var, x, w, pad in CALIBRATION:
        if var != variant:
            continue
        measured = extra.get(f"conv.{name}.{var}")
        if not measured:
            continue
        cgeo = calibration_geom(x, w, pad)
        est = analytic_seconds(cgeo, var, profile)
        points.append((math.log(max(cgeo.macs, 1)),
                       float(min(max(measured / max(est, 1e-12), 0.05), 20.0))))
    if not points:
        return 1.0
    points.sort()
    if geo is None or len(points) == 1:
        return points[0][1]
    (x0, e0), (x1, e1) = points[0], points[-1]
    t = min(max((math.log(max(geo.macs, 1)) - x0) / max(x1 - x0, 1e-9), 0.0), 1.0)
    return float(math.exp((1 - t) * math.log(e0) + t * math.log(e1)))
