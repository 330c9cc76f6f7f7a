"""Convolutions on channels-last (NHWC) tensors, for chains the core's layout pass converts.

The core's ``channels_last`` pass (``walle_core/runtime/layout.py``) rewrites chains of Convs
so that the activations between them are ``[N, H, W, C]`` and the weights ``[KH, KW, C/G, M]``
("HWIO"); a Conv step then carries ``attrs["layout"] == "NHWC"``. Here every variant keeps its
vectors along channels, which NCHW cannot:

- ``nhwc_pointwise``: a 1x1 Conv is ``Y[pixels, M] = X[pixels, C] @ W[C, M]``, the
  micro-kernel's orientation (rows of 8 pixels, vectors of 16 output channels, the bias per
  column); no copy of anything.
- ``nhwc_packed``: the same GEMM with the weights (``PACK_BYTES`` or more) packed once in
  48-column panels, ``[M/48][C][48]``: row-major ``[C, M]`` puts each k of a tile's 48
  columns M floats from the last, a page per row or two, which the hardware prefetchers do
  not follow once the weights leave the caches (MobileNetV2's 7x7 layers: their 0.6-1.6 MB
  of weights come from L3 on every run). It holds a second copy of the weights, declared to
  the search as held memory. MobileNetV2's 320->1280 at 7x7 in the model: 304 -> 237 us.
- ``nhwc_depthwise``: each output pixel is one loop over channels of ``KH*KW`` multiply-adds
  (nine explicit terms for an interior 3x3 window), so a 7x7 plane of 960 channels is 49
  vector loops of 60 vectors, not 960 loops over 49 values.
- ``nhwc_im2col``: any other group-1 Conv: per tile of output pixels each pool task copies
  the tile's windows (runs of C channels) into its slice of scratch and runs the
  micro-kernel on it while it is in cache.

Bias, the fused residual and relu/clip are applied in the micro-kernel's store (in the
depthwise loop for that variant); sigmoid/tanh in one pass after. float32 only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numba
import numpy as np

from walle_backend_numba import microkernel
from walle_backend_numba.binding import views
from walle_backend_numba.conv import _act1, _packed_address, _take, pads_2d, scratch
from walle_backend_numba.jit import dual
from walle_backend_numba.matmul import ACTS
from walle_core.ir.primitives import TensorSpec

VARIANTS = ("nhwc_pointwise", "nhwc_packed", "nhwc_depthwise", "nhwc_im2col", "nhwc_direct")
#: 1x1 weights at least this large are also offered packed in column panels (``nhwc_packed``).
PACK_BYTES = 256 << 10
#: Bytes of im2col rows per tile (kept in the worker's L2 between the copy and the GEMM).
TILE_BYTES = 256 << 10

ConvRun = Any
_gemm_serial = microkernel.gemm.serial


@dataclass(frozen=True)
class NGeom:
    """One NHWC Conv call's shapes: x [n, h, w, c], weights [kh, kw, cg, m], y [n, oh, ow, m]."""

    n: int
    h: int
    w: int
    c: int
    m: int
    cg: int
    kh: int
    kw: int
    g: int
    sh: int
    sw: int
    ph: int
    pw: int
    oh: int
    ow: int
    nchw_in: bool = False  # the input is NCHW (the chain's first Conv); the output NHWC

    @property
    def macs(self) -> int:
        return self.n * self.oh * self.ow * self.m * self.cg * self.kh * self.kw

    @property
    def depthwise(self) -> bool:
        return self.g == self.c == self.m and self.cg == 1

    def variants(self) -> list[str]:
        if self.nchw_in:
            return ["nhwc_direct"] if self.g == 1 else []
        if self.depthwise:
            return ["nhwc_depthwise"]
        if self.g != 1:
            return []
        out = []
        if (self.kh, self.kw, self.sh, self.sw, self.ph, self.pw) == (1, 1, 1, 1, 0, 0):
            out.append("nhwc_pointwise")
            if self.cg * self.m * 4 >= PACK_BYTES:
                out.append("nhwc_packed")
        out += ["nhwc_im2col", "nhwc_direct"]
        return out


def geometry(attrs: dict[str, Any], x: TensorSpec, w: TensorSpec, b: TensorSpec | None,
             y: TensorSpec) -> NGeom | None:
    """The call's geometry, or None when no NHWC variant covers it (float32, 2-D, no
    dilation, group 1 or depthwise)."""
    if attrs.get("layout") != "NHWC":
        return None
    if len(x.shape) != 4 or len(w.shape) != 4 or len(y.shape) != 4:
        return None
    if any(s.dtype.np != np.float32 for s in (x, w, y)) or \
            (b is not None and (b.dtype.np != np.float32 or b.size != w.shape[3])):
        return None
    nchw_in = attrs.get("input_layout") == "NCHW"  # a chain's first Conv reading its input
    if nchw_in:
        n, c, h, wd = x.shape
    else:
        n, h, wd, c = x.shape
    kh, kw, cg, m = w.shape
    g = int(attrs.get("group", 1))
    s = tuple(int(v) for v in (attrs.get("strides") or (1, 1)))
    d = tuple(int(v) for v in (attrs.get("dilations") or (1, 1)))
    if len(s) != 2 or d != (1, 1) or g < 1 or c != cg * g or m % g or \
            y.shape[0] != n or y.shape[3] != m:
        return None
    pads = pads_2d(attrs, (h, wd), (kh, kw), s, d)  # type: ignore[arg-type]
    if pads is None:
        return None
    geo = NGeom(n, h, wd, c, m, cg, kh, kw, g, s[0], s[1], pads[0], pads[1], y.shape[1],
                y.shape[2], nchw_in)
    return geo if geo.variants() else None


@numba.njit(cache=True, inline="always", fastmath={"contract"})
def _window3(x: Any, wt: Any, bias: Any, ih0: int, iw0: int, ch: int) -> Any:  # pragma: no cover
    """bias + the nine taps of an interior 3x3 window at (ih0, iw0), channel ``ch``."""
    i1, i2, j1, j2 = ih0 + 1, ih0 + 2, iw0 + 1, iw0 + 2
    return (bias[ch] + wt[0, ch] * x[ih0, iw0, ch] + wt[1, ch] * x[ih0, j1, ch]
            + wt[2, ch] * x[ih0, j2, ch] + wt[3, ch] * x[i1, iw0, ch]
            + wt[4, ch] * x[i1, j1, ch] + wt[5, ch] * x[i1, j2, ch]
            + wt[6, ch] * x[i2, iw0, ch] + wt[7, ch] * x[i2, j1, ch]
            + wt[8, ch] * x[i2, j2, ch])


@dual(fastmath={"contract"})
def depthwise(x: Any, wt: Any, bias: Any, y: Any, res: Any, has_res: bool, kh: int, kw: int,
              sh: int, sw: int, ph: int, pw: int, lo: Any, hi: Any,
              after: int) -> None:  # pragma: no cover
    """One image: y[p, q, :] = clamp(bias + sum over taps of wt[i * kw + j, :] * x[ih, iw, :]
    (+ res), lo, hi), then ``after`` (3 sigmoid, 4 tanh; 0 none) over the row. (3-D arrays,
    images looped by the caller: 4-D indexing measured 10-20% slower.)

    Interior windows of a 3x3 kernel are one loop over channels of the nine terms
    (:func:`_window3`) and the clamp (relu/clip, or +-inf), one loop with the residual and
    one without (a branch inside the channel loop stopped it vectorising); border windows
    and other kernel sizes accumulate per tap, skipping taps outside the input."""
    h, w, c_ = x.shape
    oh, ow = y.shape[0], y.shape[1]
    # whole-array indexing only (no row views: each view's reference count is an atomic on
    # the array both threads share)
    for p in numba.prange(oh):
        ih0 = p * sh - ph
        for q in range(ow):
            iw0 = q * sw - pw
            if kh == 3 and kw == 3 and ih0 >= 0 and ih0 + 2 < h and iw0 >= 0 and iw0 + 2 < w:
                if has_res:
                    for ch in range(c_):
                        v = _window3(x, wt, bias, ih0, iw0, ch) + res[p, q, ch]
                        y[p, q, ch] = min(max(v, lo), hi)
                else:
                    for ch in range(c_):
                        y[p, q, ch] = min(max(_window3(x, wt, bias, ih0, iw0, ch), lo), hi)
            else:
                for ch in range(c_):
                    y[p, q, ch] = bias[ch]
                for i in range(kh):
                    ih = ih0 + i
                    if ih < 0 or ih >= h:
                        continue
                    for j in range(kw):
                        iw = iw0 + j
                        if iw < 0 or iw >= w:
                            continue
                        for ch in range(c_):
                            y[p, q, ch] += wt[i * kw + j, ch] * x[ih, iw, ch]
                if has_res:
                    for ch in range(c_):
                        y[p, q, ch] += res[p, q, ch]
                for ch in range(c_):
                    y[p, q, ch] = min(max(y[p, q, ch], lo), hi)
        if after != 0:
            for q in range(ow):
                for ch in range(c_):
                    y[p, q, ch] = _act1(y[p, q, ch], after, lo, hi)


@numba.njit(cache=True, parallel=True, error_model="numpy")
def im2col_tiles(x: Any, buf: Any, pw_: int, py: int, pb: int, pr: int, lo: Any, hi: Any,
                 m: int, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, oh: int,
                 ow: int, tile: int, tasks: int) -> None:  # pragma: no cover
    """One image: per tile of ``tile`` output pixels, its windows as rows of ``buf[task]``
    (each row kh*kw runs of C channels, zeros outside the input) and then
    ``y[tile, :] = rows @ W`` through the micro-kernel (bias per column, residual, clamp in
    its store). Task t takes tiles t, t + tasks, ... into its own slice of ``buf``."""
    h, w, c = x.shape
    kk = kh * kw * c
    npx = oh * ow
    ntiles = (npx + tile - 1) // tile
    for t in numba.prange(tasks):
        rows = buf[t]
        for tl in range(t, ntiles, tasks):
            p0 = tl * tile
            cnt = min(tile, npx - p0)
            for r in range(cnt):
                p = (p0 + r) // ow
                q = (p0 + r) % ow
                base = r * kk
                for i in range(kh):
                    ih = p * sh - ph + i
                    for j in range(kw):
                        iw = q * sw - pw + j
                        off = base + (i * kw + j) * c
                        if ih < 0 or ih >= h or iw < 0 or iw >= w:
                            for ch in range(c):
                                rows[off + ch] = 0.0
                        else:
                            for ch in range(c):
                                rows[off + ch] = x[ih, iw, ch]
            _gemm_serial(rows.ctypes.data, kk, pw_, m, py + 4 * p0 * m, m, cnt, m,
                                    kk, pb, True, pr + 4 * p0 * m if pr != 0 else 0, m, lo,
                                    hi, 1)


_D1, _D2, _D3 = (microkernel._tile(v, False, True, True) for v in (1, 2, 3))
_DR1, _DR2, _DR3 = (microkernel._tile(v, True, True, True) for v in (1, 2, 3))
_W = microkernel.W


@numba.njit(cache=True, inline="always")
def _direct_tile(a: int, lda: int, pw_: int, c: int, m: int, kk: int, mr: int, n0: int,
                 pb: int, r: int, lo: Any, hi: Any, poff: int) -> None:  # pragma: no cover
    nr = min(microkernel.NR, m - n0)
    b = pw_ + 4 * n0
    bc = pb + 4 * n0
    if r != 0:
        if nr > 2 * _W:
            _DR3(a, lda, b, m, c, m, kk, mr, nr, bc, r, m, lo, hi, poff)
        elif nr > _W:
            _DR2(a, lda, b, m, c, m, kk, mr, nr, bc, r, m, lo, hi, poff)
        else:
            _DR1(a, lda, b, m, c, m, kk, mr, nr, bc, r, m, lo, hi, poff)
    elif nr > 2 * _W:
        _D3(a, lda, b, m, c, m, kk, mr, nr, bc, 0, 0, lo, hi, poff)
    elif nr > _W:
        _D2(a, lda, b, m, c, m, kk, mr, nr, bc, 0, 0, lo, hi, poff)
    else:
        _D1(a, lda, b, m, c, m, kk, mr, nr, bc, 0, 0, lo, hi, poff)


@dual()
def direct(pxp: int, row: int, lda: int, poff: int, kk: int, pw_: int, pb: int, py: int,
           pr: int, m: int, oh: int, ow: int, lo: Any, hi: Any,
           tasks: int) -> None:  # pragma: no cover
    """One image as an implicit GEMM: output pixel (p, q) reads its window from the
    zero-padded input at ``pxp + 4 * (p * row + q * lda) + 4 * off[k]`` (k over the window's
    taps and channels, in the weights' row order), so nothing is copied into columns. Tiles
    of 8 pixels of one output row x 48 output channels, each column panel of the weights
    (K x 48) kept in cache over all the pixels that use it. The tasks split the output rows,
    or, when the weights outweigh the input (deep layers on small planes), the column panels,
    so each core reads only its share of the weights."""
    npan = (m + microkernel.NR - 1) // microkernel.NR
    # weights (kk x m) larger than the input (about kk / 9 x the pixels for a 3x3 window)
    # and enough panels for every task: split the panels
    by_cols = npan >= 2 * tasks and 9 * m > oh * ow
    for t in numba.prange(tasks):
        if by_cols:
            p0, p1 = 0, oh
            c0, c1 = t * npan // tasks, (t + 1) * npan // tasks
        else:
            p0, p1 = t * oh // tasks, (t + 1) * oh // tasks
            c0, c1 = 0, npan
        for pan in range(c0, c1):
            n0 = pan * microkernel.NR
            for p in range(p0, p1):
                for q0 in range(0, ow, microkernel.MR):
                    mr = min(microkernel.MR, ow - q0)
                    a = pxp + 4 * (p * row + q0 * lda)
                    c = py + 4 * ((p * ow + q0) * m + n0)
                    r = pr + 4 * ((p * ow + q0) * m + n0) if pr != 0 else 0
                    _direct_tile(a, lda, pw_, c, m, kk, mr, n0, pb, r, lo, hi, poff)


def _after(yb: Any, act: int) -> None:
    """A fused sigmoid (3) or tanh (4), which the micro-kernel's clamp cannot apply: one pass
    over the output after it."""
    flat = yb.reshape(-1)
    if act == 3:
        np.divide(1, 1 + np.exp(-flat), out=flat)
    else:
        np.tanh(flat, out=flat)


def _plan_direct(geo: NGeom, act: int, lo: Any, hi: Any) -> ConvRun:
    """``nhwc_direct``: an implicit GEMM reading the input through a zero-padded copy and an
    offset table, writing NHWC. For a chain's RGB stem the input is NCHW (the copy then also
    does the chain's entry transpose's job); otherwise NHWC."""
    f32 = np.float32
    hp = (geo.oh - 1) * geo.sh + geo.kh
    wp = (geo.ow - 1) * geo.sw + geo.kw
    rows = min(geo.h, hp - geo.ph)
    cols = min(geo.w, wp - geo.pw)
    taps = [(i, j) for i in range(geo.kh) for j in range(geo.kw)]
    if geo.nchw_in:
        # borders stay zero; the interior is copied per run
        xp = np.zeros((geo.c, hp, wp), f32)
        offs = np.array([c * hp * wp + i * wp + j for i, j in taps for c in range(geo.cg)],
                        np.int64)
        row, lda = geo.sh * wp, geo.sw
    else:
        xp = np.zeros((hp, wp, geo.c), f32)
        offs = np.array([(i * wp + j) * geo.c + c for i, j in taps for c in range(geo.cg)],
                        np.int64)
        row, lda = geo.sh * wp * geo.c, geo.sw * geo.c
    kk = offs.size
    kernel = direct.pick(geo.macs)
    tasks = max(1, min(numba.get_num_threads() if kernel is direct.parallel else 1, geo.oh))
    clo, chi = microkernel.clamp_bounds(act, float(lo), float(hi))
    after = act not in (0, 1, 2)  # sigmoid / tanh: not a clamp
    zero_bias = np.zeros(geo.m, f32)
    img = 4 * geo.oh * geo.ow * geo.m

    bound: list[Any] = [None, None]

    def run_direct(xb: Any, wb: Any, bias: Any, yb: Any, res: Any = None) -> None:
        key = (id(wb), id(bias), id(yb), id(res))
        if bound[0] != key:  # a plan passes the same buffers every run: the addresses once
            if not (yb.flags.c_contiguous and wb.flags.c_contiguous and
                    (res is None or res.flags.c_contiguous)):
                raise ValueError("NHWC Conv buffers must be contiguous")
            b = zero_bias if bias is None else np.ascontiguousarray(bias.reshape(-1), f32)
            bound[0] = key if bias is None or np.may_share_memory(b, bias) else None
            # (the tuple holds every array whose address it has)
            bound[1] = (wb.ctypes.data, b.ctypes.data, yb.ctypes.data,
                        0 if res is None else res.ctypes.data, xp.ctypes.data, offs.ctypes.data,
                        b, wb, bias, yb, res, xp, offs)
        pw_, pb, py, pr, p_xp, p_offs = bound[1][:6]
        for i in range(geo.n):
            if geo.nchw_in:
                xp[:, geo.ph:geo.ph + rows, geo.pw:geo.pw + cols] = xb[i, :, :rows, :cols]
            else:
                xp[geo.ph:geo.ph + rows, geo.pw:geo.pw + cols] = xb[i, :rows, :cols]
            kernel(p_xp, row, lda, p_offs, kk, pw_, pb, py + i * img, pr + i * img if pr else 0,
                   geo.m, geo.oh, geo.ow, clo, chi, tasks)
        if after:
            _after(yb, act)

    return run_direct


def plan(attrs: dict[str, Any], x: TensorSpec, w: TensorSpec, b: TensorSpec | None,
         y: TensorSpec, variant: str | None = None) -> ConvRun | None:
    """A runner ``(x, w, bias, y, res=None)`` for an NHWC Conv, or None."""
    activation = attrs.get("fused_activation", "")
    if activation not in ACTS:
        return None
    geo = geometry(attrs, x, w, b, y)
    if geo is None:
        return None
    options = geo.variants()
    variant = variant or options[0]
    if variant not in options:
        return None
    act = ACTS[activation]
    params = tuple(attrs.get("fused_act_params", ()))
    lo = np.float32(params[0]) if len(params) > 0 else np.float32(0)
    hi = np.float32(params[1]) if len(params) > 1 else np.float32(0)
    f32 = np.float32
    zero_bias = np.zeros(geo.m, f32)
    no_res = np.zeros((1, 1, 1), f32)
    if variant == "nhwc_depthwise":
        kernel = depthwise.pick(geo.macs)
        dlo, dhi = microkernel.clamp_bounds(act, float(lo), float(hi))
        post = act if act in (3, 4) else 0

        memo: list[Any] = [None, None]

        def run_depthwise(xb: Any, wb: Any, bias: Any, yb: Any, res: Any = None) -> None:
            key = (id(xb), id(wb), id(bias), id(yb), id(res))
            if memo[0] != key:  # a plan passes the same buffers every run: the views once
                b = zero_bias if bias is None else bias.reshape(-1)
                taps = wb.reshape(geo.kh * geo.kw, geo.c)  # [KH, KW, 1, C] as [taps, C]
                memo[0] = key
                memo[1] = [(xb[i], taps, b, yb[i], no_res if res is None else res[i])
                            for i in range(geo.n)], (xb, wb, bias, yb, res)
            for x1, taps, b, y1, r1 in memo[1][0]:
                kernel(x1, taps, b, y1, r1, res is not None, geo.kh, geo.kw, geo.sh, geo.sw,
                       geo.ph, geo.pw, dlo, dhi, post)

        def bind_depthwise(xb: Any, wb: Any, bias: Any, yb: Any, res: Any = None
                           ) -> Callable[[], None] | None:
            v = views((wb, (geo.kh * geo.kw, geo.c)),  # [KH, KW, 1, C] as [taps, C]
                      *([] if bias is None else [(bias, (-1,))]))
            if geo.n != 1 or v is None:
                return None
            taps, b = v[0], zero_bias if bias is None else v[1]
            return partial(kernel, xb[0], taps, b, yb[0], no_res if res is None else res[0],
                           res is not None, geo.kh, geo.kw, geo.sh, geo.sw, geo.ph, geo.pw,
                           dlo, dhi, post)

        run_depthwise.bind = bind_depthwise  # type: ignore[attr-defined]
        return run_depthwise

    if variant == "nhwc_direct":
        return _plan_direct(geo, act, lo, hi)
    clo, chi = microkernel.clamp_bounds(act, float(lo), float(hi))
    after = act not in (0, 1, 2)  # sigmoid / tanh: not a clamp
    npx = geo.oh * geo.ow
    kk = geo.kh * geo.kw * geo.cg
    packed = None
    if variant in ("nhwc_pointwise", "nhwc_packed"):
        entry = microkernel.gemm_packed if variant == "nhwc_packed" else microkernel.gemm
        gemm = entry.pick(geo.n * npx * geo.m * kk)
        chunks = numba.get_num_threads() if gemm is entry.parallel else 1
        if variant == "nhwc_packed":  # once per constant weights (again if they change)
            packed = _packed_address(kk, geo.m)
    else:
        threads = numba.get_num_threads() if geo.macs >= 1 << 15 else 1
        # tiles of whole micro-kernel row panels, at least two per task where there is work
        tile = max(microkernel.MR, TILE_BYTES // max(kk * 4, 1)) // microkernel.MR * \
            microkernel.MR
        tile = max(microkernel.MR, min(tile, -(-npx // (2 * threads)) // microkernel.MR *
                                       microkernel.MR or microkernel.MR))
        tasks = max(1, min(threads, -(-npx // tile)))
        buf_shape = (tasks, tile * kk)
        buf_bytes = tasks * tile * kk * 4
        scratch(buf_bytes)  # reserve now, not on the first run
    bound: list[Any] = [None, None]

    def run_mk(xb: Any, wb: Any, bias: Any, yb: Any, res: Any = None) -> None:
        key = (id(xb), id(wb), id(bias), id(yb), id(res))
        if bound[0] != key:  # a plan passes the same buffers every run: the arguments once
            if not (xb.flags.c_contiguous and yb.flags.c_contiguous and wb.flags.c_contiguous
                    and (res is None or res.flags.c_contiguous)):
                raise ValueError("NHWC Conv buffers must be contiguous")
            b = zero_bias if bias is None else np.ascontiguousarray(bias.reshape(-1), f32)
            bound[0] = key if bias is None or np.may_share_memory(b, bias) else None
            # the addresses too: ``ndarray.ctypes.data`` costs ~0.8 us a call
            bound[1] = (b, xb, wb, yb, res, xb.ctypes.data, wb.ctypes.data, yb.ctypes.data,
                        b.ctypes.data, 0 if res is None else res.ctypes.data)
        px, pw_, py, pb, pr = bound[1][5:]
        if packed is not None:
            gemm(px, kk, packed(wb), py, geo.m, geo.n * npx, geo.m, kk, pb, True,
                 pr, geo.m, clo, chi, chunks)
        elif variant == "nhwc_pointwise":
            gemm(px, kk, pw_, geo.m, py, geo.m, geo.n * npx, geo.m, kk, pb, True, pr, geo.m,
                 clo, chi, chunks)
        else:
            buf = _take(scratch(buf_bytes), 0, buf_shape, f32)
            img = 4 * npx * geo.m
            for i in range(geo.n):
                im2col_tiles(xb[i], buf, pw_, py + i * img, pb, pr + i * img if pr else 0, clo,
                             chi, geo.m, geo.kh, geo.kw, geo.sh, geo.sw, geo.ph, geo.pw, geo.oh,
                             geo.ow, tile, tasks)
        if after:
            _after(yb, act)

    def bind(xb: Any, wb: Any, bias: Any, yb: Any, res: Any = None) -> Callable[[], None] | None:
        """The 1x1 GEMM with its addresses resolved (the executor keeps the buffers alive);
        None for the im2col variant (its scratch may move), a post-pass, or weights whose
        packed copy must be checked each run."""
        if after or variant not in ("nhwc_pointwise", "nhwc_packed"):
            return None
        plain = [a for a in (xb, wb, yb, res, bias) if a is not None]
        if not all(a.flags.c_contiguous and a.dtype == f32 for a in plain):
            return None
        pb = zero_bias.ctypes.data if bias is None else bias.ctypes.data
        pr = 0 if res is None else res.ctypes.data
        if packed is not None:
            if wb.flags.writeable:
                return None
            return partial(gemm, xb.ctypes.data, kk, packed(wb), yb.ctypes.data, geo.m,
                           geo.n * npx, geo.m, kk, pb, True, pr, geo.m, clo, chi, chunks)
        return partial(gemm, xb.ctypes.data, kk, wb.ctypes.data, geo.m, yb.ctypes.data, geo.m,
                       geo.n * npx, geo.m, kk, pb, True, pr, geo.m, clo, chi, chunks)

    run_mk.bind = bind  # type: ignore[attr-defined]
    return run_mk


def held_bytes(geo: NGeom, variant: str) -> int:
    """Bytes a variant's runner keeps besides the graph's tensors: ``nhwc_packed``'s copy of
    the weights in column panels."""
    return microkernel.panels_bytes(geo.cg, geo.m) if variant == "nhwc_packed" else 0


def analytic_seconds(geo: NGeom, variant: str, profile: Any) -> float:
    """Roofline estimate (before the variant's measured efficiency)."""
    ew = max(profile.ew_bytes_s, 1.0)
    npx = geo.n * geo.oh * geo.ow

    def gemm(mm: int, nn: int, kk: int) -> float:
        flops = 2.0 * mm * nn * kk
        return flops / max(profile.gemm_rate(flops), 1.0)

    if variant == "nhwc_depthwise":
        return profile.launch_s + geo.macs * 3 * 4 / ew
    kk = geo.kh * geo.kw * geo.cg
    if variant in ("nhwc_pointwise", "nhwc_packed"):
        return profile.launch_s + gemm(npx, geo.m, kk)
    if variant == "nhwc_im2col":
        return profile.launch_s + npx * kk * 4 / ew + gemm(npx, geo.m, kk)
    if variant == "nhwc_direct":  # the padded copy, then the GEMM reading it in place
        return profile.launch_s + geo.n * geo.c * geo.h * geo.w * 8 / ew + gemm(npx, geo.m, kk)
    raise ValueError(variant)


#: Representative shapes timed once per machine (x NHWC, w HWIO, pads, group).
CALIBRATION = (
    ("dw3x3", "nhwc_depthwise", (1, 28, 28, 64), (3, 3, 1, 64), 1, 64),
    ("pw", "nhwc_pointwise", (1, 28, 28, 32), (1, 1, 32, 64), 0, 1),
    ("conv3x3", "nhwc_im2col", (1, 28, 28, 32), (3, 3, 32, 32), 1, 1),
    ("stem", "nhwc_direct", (1, 3, 56, 56), (3, 3, 3, 32), 1, 1),
)


def efficiency(variant: str, profile: Any, geo: NGeom | None = None) -> float:
    """measured / analytic at the variant's calibration shape (1.0 when not measured), for a
    layer of any size (``geo``, as ``conv.efficiency`` takes it, is not used)."""
    extra = getattr(profile, "extra", None) or {}
    if variant == "nhwc_packed":  # the same micro-kernel: its close call tells them apart
        variant = "nhwc_pointwise"
    for name, var, x, w, pad, g in CALIBRATION:
        if var != variant:
            continue
        measured = extra.get(f"conv.{name}.{var}")
        if not measured:
            return 1.0
        geo = calibration_geom(var, x, w, pad, g)
        est = analytic_seconds(geo, var, profile)
        return float(min(max(measured / max(est, 1e-12), 0.05), 20.0))
    return 1.0


def calibration_geom(variant: str, x: tuple[int, ...], w: tuple[int, ...], pad: int,
                     g: int) -> NGeom:
    """The geometry of a CALIBRATION entry (stride 1)."""
    if variant == "nhwc_direct":  # NCHW input
        n, c, h, wd = x
    else:
        n, h, wd, c = x
    return NGeom(n, h, wd, c, w[3], w[2], w[0], w[1], g, 1, 1, pad, pad, h + 2 * pad - w[0] + 1,
                 wd + 2 * pad - w[1] + 1, variant == "nhwc_direct")
