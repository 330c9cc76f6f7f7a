"""Resize (all modes, coordinate transforms, antialias, axes, aspect policy) and Upsample.

Resize is separable: for each axis a weight matrix W[out, in] is built from the 1-D rule and
applied with a tensordot, so nearest, linear, cubic and antialiased filters share one path.
x_original = transform(x_resized) per ``coordinate_transformation_mode``; nearest rounds it,
linear interpolates between floor/ceil (clamped to the edge), cubic uses Keys' kernel with
``cubic_coeff_a`` over 4 taps (edge-clamped, or dropped and renormalised with exclude_outside).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from walle_core.reference_ops._util import norm_axis, opt_input
from walle_core.reference_ops.registry import register

Inputs = list[Any]
Attrs = dict[str, Any]


def _original_coord(x: int, scale: float, in_len: int, out_len: int, mode: str,
                    roi: tuple[float, float]) -> float:
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        adjustment = out_len / (scale * in_len)
        center = in_len / 2
        return center * (1 - adjustment) + (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out_len > 1 else 0.0
    if mode == "align_corners":
        # The resized length is the real-valued in_len * scale, not the rounded size.
        return 0.0 if out_len == 1 else x * (in_len - 1) / (in_len * scale - 1)
    if mode == "asymmetric":
        return x / scale
    if mode == "tf_crop_and_resize":
        start, end = roi
        if out_len > 1:
            return start * (in_len - 1) + x * (end - start) * (in_len - 1) / (out_len - 1)
        return 0.5 * (start + end) * (in_len - 1)
    raise ValueError(f"Resize: unknown coordinate_transformation_mode {mode!r}")


def _nearest(xo: float, rule: str) -> int:
    frac = xo - math.floor(xo)
    if rule == "floor":
        return math.floor(xo)
    if rule == "ceil":
        return math.ceil(xo)
    if frac == 0.5:
        return math.floor(xo) if rule == "round_prefer_floor" else math.ceil(xo)
    return round(xo)


def _cubic(t: float, a: float) -> float:
    t = abs(t)
    if t <= 1:
        return (a + 2) * t**3 - (a + 3) * t**2 + 1
    if t < 2:
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return 0.0


def axis_weights(in_len: int, out_len: int, scale: float, attrs: Attrs,
                 roi: tuple[float, float], upsample: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """W[out, in] and a bool 'outside' mask[out] (for tf_crop_and_resize extrapolation)."""
    mode = attrs.get("mode", "nearest")
    ctm = "asymmetric" if upsample else attrs.get("coordinate_transformation_mode", "half_pixel")
    a = attrs.get("cubic_coeff_a", -0.75)
    exclude = attrs.get("exclude_outside", 0)
    antialias = attrs.get("antialias", 0) and scale < 1 and mode != "nearest"
    w = np.zeros((out_len, in_len))
    outside = np.zeros(out_len, bool)
    for x in range(out_len):
        xo = _original_coord(x, scale, in_len, out_len, ctm, roi)
        if ctm == "tf_crop_and_resize" and (xo < 0 or xo > in_len - 1):
            outside[x] = True
            continue
        if mode == "nearest":
            w[x, min(max(_nearest(xo, attrs.get("nearest_mode", "round_prefer_floor")), 0),
                     in_len - 1)] = 1.0
            continue
        if mode == "linear" and not antialias:
            xo = min(max(xo, 0.0), in_len - 1.0)
        f = scale if antialias else 1.0
        support = (1.0 if mode == "linear" else 2.0) / f
        taps = range(math.floor(xo - support) + 1, math.ceil(xo + support))
        if mode == "linear" and not antialias:
            taps = range(math.floor(xo), math.floor(xo) + 2)
        for i in taps:
            t = (i - xo) * f
            k = max(0.0, 1 - abs(t)) if mode == "linear" else _cubic(t, a)
            if i < 0 or i >= in_len:
                if exclude:
                    continue
                i = min(max(i, 0), in_len - 1)
            w[x, i] += k
        if exclude or antialias:
            total = w[x].sum()
            w[x] = w[x] / total if total else w[x]
    return w, outside


def _apply(x: np.ndarray, sizes: list[int], scales: list[float], rois: list[tuple[float, float]],
           attrs: Attrs, upsample: bool = False) -> np.ndarray:
    y = x.astype(np.float64)
    outside = np.zeros(sizes, bool)
    for ax in range(x.ndim):
        if sizes[ax] == x.shape[ax] and scales[ax] == 1.0 and \
                attrs.get("coordinate_transformation_mode") != "tf_crop_and_resize":
            continue
        w, out_mask = axis_weights(x.shape[ax], sizes[ax], scales[ax], attrs, rois[ax], upsample)
        y = np.moveaxis(np.tensordot(w, np.moveaxis(y, ax, 0), axes=(1, 0)), 0, ax)
        shape = [1] * x.ndim
        shape[ax] = sizes[ax]
        outside = outside | out_mask.reshape(shape)
    y = np.where(outside, attrs.get("extrapolation_value", 0.0), y)
    if x.dtype.kind in "iu":
        y = np.clip(np.rint(y), np.iinfo(x.dtype).min, np.iinfo(x.dtype).max)
    return y.astype(x.dtype)


@register("Resize")
def resize(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    if opset < 11:
        roi, scales_in, sizes_in = None, inputs[1], None
    else:
        roi, scales_in, sizes_in = (opt_input(inputs, i) for i in (1, 2, 3))
    if scales_in is not None and scales_in.size == 0:
        scales_in = None
    axes = [norm_axis(a, x.ndim) for a in attrs.get("axes", range(x.ndim))]
    scales = [1.0] * x.ndim
    sizes = list(x.shape)
    if sizes_in is not None and sizes_in.size:
        req = [int(v) for v in sizes_in]
        policy = attrs.get("keep_aspect_ratio_policy", "stretch")
        ratios = [req[i] / x.shape[a] for i, a in enumerate(axes)]
        if policy != "stretch":
            r = min(ratios) if policy == "not_larger" else max(ratios)
            ratios = [r] * len(axes)
            req = [int(math.floor(r * x.shape[a] + 0.5)) for a in axes]
        for i, a in enumerate(axes):
            sizes[a], scales[a] = req[i], ratios[i]
    else:
        assert scales_in is not None
        for i, a in enumerate(axes):
            scales[a] = float(scales_in[i])
            sizes[a] = int(math.floor(x.shape[a] * scales[a]))
    rois = [(0.0, 1.0)] * x.ndim
    if roi is not None and roi.size:
        k = len(axes)
        for i, a in enumerate(axes):
            rois[a] = (float(roi[i]), float(roi[i + k]))
    return [_apply(x, sizes, scales, rois, attrs)]


@register("Upsample")
def upsample(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    sc = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs["scales"]
    scales = [float(v) for v in np.asarray(sc).reshape(-1)]
    sizes = [int(math.floor(d * s)) for d, s in zip(x.shape, scales, strict=True)]
    a = dict(attrs)
    a["nearest_mode"] = "floor"
    return [_apply(x, sizes, scales, [(0.0, 1.0)] * x.ndim, a, upsample=True)]
