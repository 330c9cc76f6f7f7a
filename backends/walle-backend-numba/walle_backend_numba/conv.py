"""Native 2-D Conv: the three algorithms CNNs need, chosen per shape at compile time.

- 1x1, stride 1, no padding: ``y[n, g] = W[g] @ x[n, g]`` straight on the NCHW buffers (GEMM,
  no copy at all).
- depthwise (one input channel per group): a direct numba loop per (n, c) plane; the valid
  output columns for each kernel tap are computed up front so the inner loop has no branches
  and vectorises.
- anything else: numba im2col into a scratch matrix allocated once per compiled step
  (``[C/G*KH*KW, OH*OW]``), then one BLAS GEMM per (n, g) into the output.
Bias is added (per output channel) in the same numba epilogue MatMul uses. Layout NCHW,
weights ``[M, C/G, KH, KW]``, float32/float64. Other cases return None and run on the
reference kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np

from walle_backend_numba.jit import dual
from walle_backend_numba.matmul import COLUMN, epilogue
from walle_core.ir.primitives import TensorSpec


@dual()
def im2col(x: Any, col: Any, c0: int, cg: int, kh: int, kw: int, sh: int, sw: int, ph: int,
           pw: int, dh: int, dw: int, oh: int, ow: int) -> None:  # pragma: no cover
    """col[(c*kh + i)*kw + j, p*ow + q] = x[c0 + c, p*sh + i*dh - ph, q*sw + j*dw - pw] or 0."""
    h, w = x.shape[1], x.shape[2]
    for row in numba.prange(cg * kh * kw):
        c = row // (kh * kw)
        i = (row // kw) % kh
        j = row % kw
        for p in range(oh):
            ih = p * sh + i * dh - ph
            base = p * ow
            if ih < 0 or ih >= h:
                for q in range(ow):
                    col[row, base + q] = 0
                continue
            for q in range(ow):
                iw = q * sw + j * dw - pw
                col[row, base + q] = x[c0 + c, ih, iw] if 0 <= iw < w else 0


@dual(fastmath={"contract"})
def depthwise(x: Any, wt: Any, y: Any, sh: int, sw: int, ph: int, pw: int, dh: int,
              dw: int) -> None:  # pragma: no cover
    """y[n, c] = sum_ij wt[c, 0, i, j] * x[n, c, p*sh + i*dh - ph, q*sw + j*dw - pw]."""
    n_, c_, h, w = x.shape
    oh, ow = y.shape[2], y.shape[3]
    kh, kw = wt.shape[2], wt.shape[3]
    for nc in numba.prange(n_ * c_):
        n = nc // c_
        c = nc % c_
        for p in range(oh):
            for q in range(ow):
                y[n, c, p, q] = 0
            for i in range(kh):
                ih = p * sh + i * dh - ph
                if ih < 0 or ih >= h:
                    continue
                for j in range(kw):
                    off = j * dw - pw
                    lo = max(0, (-off + sw - 1) // sw)
                    hi = min(ow, (w - 1 - off) // sw + 1) if w - 1 - off >= 0 else 0
                    wv = wt[c, 0, i, j]
                    yrow = y[n, c, p]
                    xrow = x[n, c, ih]
                    if sw == 1:  # contiguous on both sides: vectorises
                        for q in range(lo, hi):
                            yrow[q] += wv * xrow[q + off]
                    else:
                        for q in range(lo, hi):
                            yrow[q] += wv * xrow[q * sw + off]


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


def plan(attrs: dict[str, Any], x: TensorSpec, w: TensorSpec, b: TensorSpec | None,
         y: TensorSpec) -> Callable[[Any, Any, Any, Any], None] | None:
    dtype = y.dtype.np
    if len(x.shape) != 4 or len(w.shape) != 4 or len(y.shape) != 4:
        return None
    if dtype.name not in ("float32", "float64") or x.dtype.np != dtype or w.dtype.np != dtype:
        return None
    if b is not None and (b.dtype.np != dtype or b.size != w.shape[0]):
        return None
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    g = int(attrs.get("group", 1))
    s = tuple(int(v) for v in (attrs.get("strides") or (1, 1)))
    d = tuple(int(v) for v in (attrs.get("dilations") or (1, 1)))
    if len(s) != 2 or len(d) != 2 or c != cg * g or m % g:
        return None
    pads = pads_2d(attrs, (h, wd), (kh, kw), s, d)  # type: ignore[arg-type]
    if pads is None:
        return None
    ph, pw = pads
    oh, ow = y.shape[2], y.shape[3]
    mg = m // g
    one, zero = dtype.type(1), dtype.type(0)
    post = epilogue.pick(n * m * oh * ow)

    def add_bias(yb: Any, bias: Any) -> None:
        if bias is not None:
            post(yb.reshape(n * m, oh * ow), one, bias.reshape(-1), COLUMN, one, 0, zero,
                     zero, m)

    if cg == 1 and mg == 1:
        dw_kernel = depthwise.pick(n * m * oh * ow * kh * kw)

        def run_depthwise(xb: Any, wb: Any, bias: Any, yb: Any) -> None:
            dw_kernel(xb, wb, yb, s[0], s[1], ph, pw, d[0], d[1])
            add_bias(yb, bias)

        return run_depthwise

    if kh == kw == 1 and s == (1, 1) and (ph, pw) == (0, 0) and (oh, ow) == (h, wd):
        def run_pointwise(xb: Any, wb: Any, bias: Any, yb: Any) -> None:
            w3 = wb.reshape(g, mg, cg)
            x4 = xb.reshape(n, g, cg, h * wd)
            y4 = yb.reshape(n, g, mg, oh * ow)
            for i in range(n):  # 2-D GEMMs: np.matmul's broadcast batch path is slower
                for k in range(g):
                    np.matmul(w3[k], x4[i, k], out=y4[i, k])
            add_bias(yb, bias)

        return run_pointwise

    col = np.empty((cg * kh * kw, oh * ow), dtype)
    unfold = im2col.pick(col.size)

    def run_im2col(xb: Any, wb: Any, bias: Any, yb: Any) -> None:
        w3 = wb.reshape(g, mg, cg * kh * kw)
        y4 = yb.reshape(n, g, mg, oh * ow)
        for i in range(n):
            for k in range(g):
                unfold(xb[i], col, k * cg, cg, kh, kw, s[0], s[1], ph, pw, d[0], d[1], oh, ow)
                np.matmul(w3[k], col, out=y4[i, k])
        add_bias(yb, bias)

    return run_im2col
