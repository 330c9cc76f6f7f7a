"""Pooling: MaxPool (with indices), AveragePool, LpPool, Global*Pool, MaxUnpool.

Output size per spatial dim: out = floor_or_ceil((in + pb + pe - ((k-1) d + 1)) / s) + 1; in
ceil mode a window that would start past the padded input is dropped. Windows are evaluated as
strided views of the padded input, one view per kernel offset.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from walle_core.reference_ops.conv import resolve_pads, window
from walle_core.reference_ops.registry import register

Inputs = list[Any]
Attrs = dict[str, Any]


def _pool_geometry(x: np.ndarray, attrs: Attrs) -> tuple[list[int], list[int], list[int],
                                                           list[int], list[int], list[int]]:
    """kernel, strides, dilations, begin pads, end pads (incl. ceil-mode extra), out size."""
    nd = x.ndim - 2
    k = list(attrs["kernel_shape"])
    s = list(attrs.get("strides") or [1] * nd)
    d = list(attrs.get("dilations") or [1] * nd)
    in_sp = list(x.shape[2:])
    pads = resolve_pads(in_sp, k, s, d, attrs)
    begin, end, out = pads[:nd], pads[nd:], []
    for i in range(nd):
        span = in_sp[i] + begin[i] + end[i] - ((k[i] - 1) * d[i] + 1)
        if attrs.get("ceil_mode", 0):
            o = -(-span // s[i]) + 1
            if (o - 1) * s[i] >= in_sp[i] + begin[i]:
                o -= 1
        else:
            o = span // s[i] + 1
        out.append(o)
    extra = [max(0, (out[i] - 1) * s[i] + (k[i] - 1) * d[i] + 1 - (in_sp[i] + begin[i] + end[i]))
             for i in range(nd)]
    return k, s, d, begin, [end[i] + extra[i] for i in range(nd)], out


def _pad(x: np.ndarray, begin: list[int], end: list[int], value: Any) -> np.ndarray:
    return np.pad(x, [(0, 0), (0, 0)] + list(zip(begin, end, strict=True)),
                  constant_values=value)


@register("MaxPool")
def max_pool(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    k, s, d, begin, end, out = _pool_geometry(x, attrs)
    low = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    xp = _pad(x, begin, end, low)
    # Flat input index of every element (row-major, or column-major over the spatial dims).
    if attrs.get("storage_order", 0):
        sp = x.shape[2:]
        idx = np.arange(x.size).reshape(*x.shape[:2], *sp[::-1])
        idx = idx.transpose(0, 1, *range(x.ndim - 1, 1, -1))
    else:
        idx = np.arange(x.size).reshape(x.shape)
    ip = _pad(idx, begin, end, -1)
    best = np.full((x.shape[0], x.shape[1], *out), low, dtype=x.dtype)
    best_i = np.full(best.shape, -1, dtype=np.int64)
    for kidx in itertools.product(*(range(v) for v in k)):
        v, i = window(xp, kidx, s, d, out), window(ip, kidx, s, d, out)
        better = (v > best) | ((best_i < 0) & (i >= 0))
        best = np.where(better, v, best)
        best_i = np.where(better, i, best_i)
    return [best, best_i]


def _avg_or_lp(x: np.ndarray, attrs: Attrs, p: float | None) -> np.ndarray:
    k, s, d, begin, end, out = _pool_geometry(x, attrs)
    nd = len(k)
    explicit_end = [e for e in resolve_pads(list(x.shape[2:]), k, s, d, attrs)[nd:]]
    xf = x.astype(np.float64)
    if p is not None:
        xf = np.abs(xf) ** p
    xp = _pad(xf, begin, end, 0.0)
    # count: real elements, plus explicit padding when count_include_pad (never ceil extra).
    ones = np.ones((1, 1, *x.shape[2:]))
    if attrs.get("count_include_pad", 0):
        counted = _pad(np.pad(ones, [(0, 0), (0, 0)] + list(zip(begin, explicit_end,
                                                                  strict=True)),
                              constant_values=1.0), [0] * nd,
                       [end[i] - explicit_end[i] for i in range(nd)], 0.0)
    else:
        counted = _pad(ones, begin, end, 0.0)
    total = np.zeros((x.shape[0], x.shape[1], *out))
    count = np.zeros((1, 1, *out))
    for kidx in itertools.product(*(range(v) for v in k)):
        total += window(xp, kidx, s, d, out)
        count += window(counted, kidx, s, d, out)
    if p is not None:
        return total ** (1.0 / p)
    return total / np.maximum(count, 1)


@register("AveragePool")
def average_pool(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    return [_avg_or_lp(inputs[0], attrs, None).astype(inputs[0].dtype)]


@register("LpPool")
def lp_pool(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    return [_avg_or_lp(inputs[0], attrs, float(attrs.get("p", 2))).astype(inputs[0].dtype)]


@register("GlobalAveragePool")
def global_average_pool(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    return [x.mean(axis=tuple(range(2, x.ndim)), keepdims=True).astype(x.dtype)]


@register("GlobalMaxPool")
def global_max_pool(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    return [x.max(axis=tuple(range(2, x.ndim)), keepdims=True)]


@register("GlobalLpPool")
def global_lp_pool(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    p = float(attrs.get("p", 2))
    y = (np.abs(x.astype(np.float64)) ** p).sum(axis=tuple(range(2, x.ndim)), keepdims=True)
    return [(y ** (1.0 / p)).astype(x.dtype)]


@register("MaxUnpool")
def max_unpool(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    # Scatter x into zeros at the flat indices MaxPool returned.
    x, idx = inputs[0], inputs[1]
    out_shape = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
    nd = x.ndim - 2
    k = attrs["kernel_shape"]
    s = attrs.get("strides") or [1] * nd
    pads = attrs.get("pads") or [0] * (2 * nd)
    sp = [(x.shape[2 + i] - 1) * s[i] + k[i] - pads[i] - pads[i + nd] for i in range(nd)]
    inferred = [x.shape[0], x.shape[1], *sp]
    shape = inferred if out_shape is None else [int(v) for v in out_shape]
    flat = idx.reshape(-1)
    if shape != inferred:
        # Indices address the inferred (pooled input) shape; re-address them in the output.
        flat = np.ravel_multi_index(np.unravel_index(flat, inferred), shape)
    y = np.zeros(int(np.prod(shape)), dtype=x.dtype)
    y[flat] = x.reshape(-1)
    return [y.reshape(shape)]
