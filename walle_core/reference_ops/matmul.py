"""MatMul, Gemm, Einsum, Det and the quantized family (Quantize/DequantizeLinear, QLinearMatMul,
QLinearConv's quantisation helpers, MatMulInteger, DynamicQuantizeLinear).

Quantisation: q = saturate(round_half_even(x / scale) + zero_point); x = (q - zp) * scale.
Scales are per tensor (scalar), per axis (1-D along ``axis``) or blocked (same rank as x, each
entry repeated ``block_size`` times along ``axis``).
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from walle_core.reference_ops._util import norm_axis, np_dtype, opt_input
from walle_core.reference_ops.casting import cast_to
from walle_core.reference_ops.registry import register

Inputs = list[Any]
Attrs = dict[str, Any]


@register("MatMul")
def matmul(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    a, b = inputs[0], inputs[1]
    return [np.asarray(np.matmul(a, b)).astype(a.dtype, copy=False)]


@register("Gemm")
def gemm(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    # Y = alpha * op(A) op(B) + beta * C
    a, b, c = inputs[0], inputs[1], opt_input(inputs, 2)
    a = a.T if attrs.get("transA", 0) else a
    b = b.T if attrs.get("transB", 0) else b
    y = attrs.get("alpha", 1.0) * (a @ b)
    if c is not None:
        y = y + attrs.get("beta", 1.0) * c
    return [np.asarray(y).astype(inputs[0].dtype, copy=False)]


@register("Einsum")
def einsum(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    eq = attrs["equation"].replace(" ", "")
    xs = [x for x in inputs if x is not None]
    # numpy's einsum rejects ml_dtypes (bfloat16): compute those in float32.
    work = [x.astype(np.float32) if x.dtype.kind == "V" or x.dtype.name == "bfloat16" else x
            for x in xs]
    return [np.asarray(np.einsum(eq, *work)).astype(xs[0].dtype, copy=False)]


@register("Det")
def det(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    return [np.asarray(np.linalg.det(x)).astype(x.dtype)]


def broadcast_param(p: np.ndarray, x: np.ndarray, axis: int, block: int) -> np.ndarray:
    """Expand a quantisation scale/zero-point to broadcast against ``x``."""
    if p.ndim == 0 or p.size == 1 and p.ndim <= 1:
        return p.reshape(())
    axis = norm_axis(axis, x.ndim)
    if block > 0:
        p = np.repeat(p, block, axis=axis)
        return np.take(p, range(x.shape[axis]), axis=axis)
    shape = [1] * x.ndim
    shape[axis] = p.size
    return p.reshape(shape)


def _int_range(dt: np.dtype) -> tuple[int, int]:
    info = ml_dtypes.iinfo(dt) if dt.name in ("int4", "uint4", "int2", "uint2") else np.iinfo(dt)
    return int(info.min), int(info.max)


def quantize(x: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, out: np.dtype,
             axis: int = 1, block: int = 0, saturate: bool = True) -> np.ndarray:
    s = broadcast_param(scale, x, axis, block).astype(np.float64)
    scaled = x.astype(np.float64) / s
    if out.kind in "iu" or out.name in ("int4", "uint4", "int2", "uint2"):
        z = 0 if zp is None else broadcast_param(zp, x, axis, block).astype(np.int64)
        lo, hi = _int_range(out)
        return np.clip(np.rint(scaled) + z, lo, hi).astype(out)
    z_f = 0.0 if zp is None else broadcast_param(zp, x, axis, block).astype(np.float32)
    from onnx.helper import np_dtype_to_tensor_dtype

    return cast_to(np.asarray(scaled + z_f, np.float32), np_dtype_to_tensor_dtype(out),
                   saturate=saturate)


def dequantize(q: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, axis: int = 1,
               block: int = 0) -> np.ndarray:
    qf = q.astype(np.float32) if q.dtype.kind not in "iu" else q.astype(np.float64)
    if zp is not None:
        qf = qf - broadcast_param(zp, q, axis, block).astype(np.float64)
    return qf * broadcast_param(scale, q, axis, block).astype(np.float64)


@register("QuantizeLinear")
def quantize_linear(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x, scale, zp = inputs[0], inputs[1], opt_input(inputs, 2)
    if "output_dtype" in attrs and attrs["output_dtype"]:
        out = np_dtype(attrs["output_dtype"])
    else:
        out = zp.dtype if zp is not None else np.dtype(np.uint8)
    y = quantize(x, scale, zp, out, attrs.get("axis", 1), attrs.get("block_size", 0),
                 bool(attrs.get("saturate", 1)))
    return [y]


@register("DequantizeLinear")
def dequantize_linear(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    q, scale, zp = inputs[0], inputs[1], opt_input(inputs, 2)
    out = np_dtype(attrs["output_dtype"]) if attrs.get("output_dtype") else scale.dtype
    y = dequantize(q, scale, zp, attrs.get("axis", 1), attrs.get("block_size", 0))
    return [y.astype(out)]


@register("DynamicQuantizeLinear")
def dynamic_quantize_linear(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    # scale = (max(0, max x) - min(0, min x)) / 255; zp = saturate(round(-min / scale)).
    x = inputs[0].astype(np.float32)
    lo, hi = min(0.0, float(x.min())), max(0.0, float(x.max()))
    scale = np.float32((hi - lo) / 255.0)
    zp = np.uint8(np.clip(np.rint(-lo / scale), 0, 255)) if scale != 0 else np.uint8(0)
    y = np.clip(np.rint(x / scale) + zp, 0, 255).astype(np.uint8) if scale != 0 else \
        np.full(x.shape, zp, np.uint8)
    return [y, np.array(scale, np.float32), np.array(zp, np.uint8)]


@register("MatMulInteger")
def matmul_integer(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    a, b = inputs[0].astype(np.int32), inputs[1].astype(np.int32)
    za, zb = opt_input(inputs, 2), opt_input(inputs, 3)
    if za is not None:
        a = a - (za.astype(np.int32).reshape(-1, 1) if za.size > 1 else za.astype(np.int32))
    if zb is not None:
        b = b - zb.astype(np.int32)
    return [np.matmul(a, b).astype(np.int32)]


@register("QLinearMatMul")
def qlinear_matmul(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    a, sa, za, b, sb, zb, sy, zy = inputs[:8]
    af = a.astype(np.float64) - za.astype(np.float64)
    bf = b.astype(np.float64) - zb.astype(np.float64)
    real = (af @ bf) * (sa.astype(np.float64) * sb.astype(np.float64))
    return [quantize(real, sy, zy, zy.dtype)]
