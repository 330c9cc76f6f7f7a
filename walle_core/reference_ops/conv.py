"""Convolutions over N spatial dims: Conv, ConvTranspose, ConvInteger, QLinearConv, DeformConv,
Col2Im. Layout NC[D]HW, weights M x C/group x k...; written as a loop over kernel offsets with
a strided window view per offset (im2col without materialising the matrix).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from walle_core.reference_ops._util import opt_input
from walle_core.reference_ops.registry import register

Inputs = list[Any]
Attrs = dict[str, Any]


def resolve_pads(in_sp: list[int], k: list[int], s: list[int], d: list[int],
                 attrs: Attrs) -> list[int]:
    """Begin pads then end pads ([b1.., e1..]) after applying ``auto_pad``."""
    nd = len(in_sp)
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        # out = ceil(in / s); total = max((out - 1) s + (k - 1) d + 1 - in, 0)
        begin, end = [], []
        for i in range(nd):
            out = -(-in_sp[i] // s[i])
            total = max((out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - in_sp[i], 0)
            small, big = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else big)
            end.append(big if auto == "SAME_UPPER" else small)
        return begin + end
    if auto == "VALID":
        return [0] * (2 * nd)
    return list(attrs.get("pads") or [0] * (2 * nd))


def _geometry(x: np.ndarray, w_shape: tuple[int, ...], attrs: Attrs
              ) -> tuple[list[int], list[int], list[int], list[int]]:
    nd = x.ndim - 2
    k = list(attrs.get("kernel_shape") or w_shape[2:])
    s = list(attrs.get("strides") or [1] * nd)
    d = list(attrs.get("dilations") or [1] * nd)
    pads = resolve_pads(list(x.shape[2:]), k, s, d, attrs)
    return k, s, d, pads


def window(xp: np.ndarray, kidx: tuple[int, ...], s: list[int], d: list[int],
           out: list[int]) -> np.ndarray:
    """xp[..., kidx*d + o*s] for every output position o (a strided view)."""
    sl = tuple(slice(kidx[i] * d[i], kidx[i] * d[i] + s[i] * (out[i] - 1) + 1, s[i])
               for i in range(len(out)))
    return xp[(slice(None), slice(None), *sl)]


def conv_nd(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, attrs: Attrs) -> np.ndarray:
    # y[n, m, o] = b[m] + sum_{c, k} x_pad[n, g*Cg + c, o*s + k*d] * w[m, c, k]
    k, s, d, pads = _geometry(x, w.shape, attrs)
    nd = len(k)
    group = attrs.get("group", 1)
    xp = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)])
    out = [(xp.shape[2 + i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 for i in range(nd)]
    n, m = x.shape[0], w.shape[0]
    cg, mg = x.shape[1] // group, m // group
    y = np.zeros((n, m, *out), dtype=np.float64 if x.dtype.kind == "f" else np.int64)
    for g in range(group):
        xg = xp[:, g * cg:(g + 1) * cg]
        wg = w[g * mg:(g + 1) * mg]
        for kidx in itertools.product(*(range(v) for v in k)):
            patch = window(xg, kidx, s, d, out)
            wk = wg[(slice(None), slice(None), *kidx)]  # type: ignore[arg-type]
            y[:, g * mg:(g + 1) * mg] += np.einsum("nc...,mc->nm...", patch, wk)
    if b is not None:
        y += b.reshape(1, -1, *([1] * nd))
    return y


@register("Conv")
def conv(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x, w, b = inputs[0], inputs[1], opt_input(inputs, 2)
    return [conv_nd(x, w, b, attrs).astype(x.dtype)]


@register("ConvInteger")
def conv_integer(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x, w = inputs[0].astype(np.int64), inputs[1].astype(np.int64)
    xz, wz = opt_input(inputs, 2), opt_input(inputs, 3)
    if xz is not None:
        x = x - xz.astype(np.int64)
    if wz is not None:
        w = w - wz.astype(np.int64).reshape(-1, *([1] * (w.ndim - 1)))
    # Padding must be with the zero point, i.e. 0 after the shift: conv_nd pads with 0.
    return [conv_nd(x, w, None, attrs).astype(np.int32)]


@register("QLinearConv")
def qlinear_conv(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    from walle_core.reference_ops.matmul import quantize

    x, sx, zx, w, sw, zw, sy, zy = inputs[:8]
    b = opt_input(inputs, 8)
    xi = x.astype(np.int64) - zx.astype(np.int64)
    wi = w.astype(np.int64) - zw.astype(np.int64).reshape(-1, *([1] * (w.ndim - 1)))
    acc = conv_nd(xi, wi, b.astype(np.int64) if b is not None else None, attrs)
    real = acc * (sx.astype(np.float64) * sw.astype(np.float64).reshape(1, -1,
                                                                          *([1] * (w.ndim - 2))))
    return [quantize(real, sy, zy, zy.dtype)]


@register("ConvTranspose")
def conv_transpose(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    # y_full[n, g*Mg + m, i*s + k*d] += x[n, g*Cg + c, i] * w[g*Cg + c, m, k]; then crop pads.
    x, w, b = inputs[0], inputs[1], opt_input(inputs, 2)
    nd = x.ndim - 2
    k = list(attrs.get("kernel_shape") or w.shape[2:])
    s = list(attrs.get("strides") or [1] * nd)
    d = list(attrs.get("dilations") or [1] * nd)
    op = list(attrs.get("output_padding") or [0] * nd)
    group = attrs.get("group", 1)
    in_sp = list(x.shape[2:])
    full = [s[i] * (in_sp[i] - 1) + op[i] + (k[i] - 1) * d[i] + 1 for i in range(nd)]
    auto = attrs.get("auto_pad", "NOTSET")
    if "output_shape" in attrs or auto in ("SAME_UPPER", "SAME_LOWER"):
        target = list(attrs.get("output_shape") or [in_sp[i] * s[i] for i in range(nd)])
        target = target[-nd:]
        total = [full[i] - target[i] for i in range(nd)]
        if auto == "SAME_UPPER":
            begin = [t // 2 for t in total]
        else:
            begin = [t - t // 2 for t in total]
        pads = begin + [total[i] - begin[i] for i in range(nd)]
    elif auto == "VALID":
        pads = [0] * (2 * nd)
    else:
        pads = list(attrs.get("pads") or [0] * (2 * nd))
    n, cg = x.shape[0], x.shape[1] // group
    mg = w.shape[1]
    y = np.zeros((n, mg * group, *full), dtype=np.float64)
    for g in range(group):
        xg = x[:, g * cg:(g + 1) * cg].astype(np.float64)
        wg = w[g * cg:(g + 1) * cg]
        for kidx in itertools.product(*(range(v) for v in k)):
            contrib = np.einsum("nc...,cm->nm...", xg, wg[(slice(None), slice(None), *kidx)])
            sl = tuple(slice(kidx[i] * d[i], kidx[i] * d[i] + s[i] * (in_sp[i] - 1) + 1, s[i])
                       for i in range(nd))
            y[(slice(None), slice(g * mg, (g + 1) * mg), *sl)] += contrib
    # Negative pads (output_shape larger than the natural size) extend with zeros.
    y = np.pad(y, [(0, 0), (0, 0)] + [(max(0, -pads[i]), max(0, -pads[i + nd]))
                                      for i in range(nd)])
    crop = tuple(slice(max(0, pads[i]), y.shape[2 + i] - max(0, pads[i + nd]))
                 for i in range(nd))
    y = y[(slice(None), slice(None), *crop)]
    if b is not None:
        y = y + b.reshape(1, -1, *([1] * nd))
    return [y.astype(x.dtype)]


@register("Col2Im")
def col2im(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    # Inverse of im2col: column (c, k) at block position o adds into y[c, o*s + k*d - pad].
    x, image_shape, block_shape = inputs[0], inputs[1], inputs[2]
    img = [int(v) for v in image_shape]
    blk = [int(v) for v in block_shape]
    nd = len(img)
    s = list(attrs.get("strides") or [1] * nd)
    d = list(attrs.get("dilations") or [1] * nd)
    pads = list(attrs.get("pads") or [0] * (2 * nd))
    n = x.shape[0]
    c = x.shape[1] // int(np.prod(blk))
    padded = [img[i] + pads[i] + pads[i + nd] for i in range(nd)]
    out = [(padded[i] - d[i] * (blk[i] - 1) - 1) // s[i] + 1 for i in range(nd)]
    cols = x.reshape(n, c, *blk, *out)
    y = np.zeros((n, c, *padded), dtype=x.dtype)
    for kidx in itertools.product(*(range(v) for v in blk)):
        sl = tuple(slice(kidx[i] * d[i], kidx[i] * d[i] + s[i] * (out[i] - 1) + 1, s[i])
                   for i in range(nd))
        y[(slice(None), slice(None), *sl)] += cols[(slice(None), slice(None), *kidx)]
    crop = tuple(slice(pads[i], padded[i] - pads[i + nd]) for i in range(nd))
    return [y[(slice(None), slice(None), *crop)]]
