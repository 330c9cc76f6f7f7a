"""Cast semantics, including the 8/6/4/2-bit float and integer types (via ml_dtypes, which
numpy uses for those dtypes through ``onnx.helper.tensor_dtype_to_np_dtype``).

Float8 saturation (ONNX Cast spec): with ``saturate=1`` finite values beyond the type's range
clamp to +-max, and +-inf becomes +-max (the node suite expects this for the FNUZ types too);
with ``saturate=0`` overflow follows IEEE-like rules (inf or NaN), which is what ml_dtypes'
plain conversion does. Narrow integer types (int4/uint4/int2/uint2) follow
ml_dtypes' conversion (truncate, wrap), which is what the ONNX node suite expects.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from walle_core.reference_ops._util import np_dtype

_F8 = ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz")
_NARROW_INT = ("int4", "uint4", "int2", "uint2")


def _to_float8(x: np.ndarray, dt: np.dtype, saturate: bool) -> np.ndarray:
    xf = x.astype(np.float32)
    if saturate:
        mx = float(ml_dtypes.finfo(dt).max)
        clipped = np.clip(xf, -mx, mx)
        xf = np.where(np.isnan(xf), xf, clipped)
    return xf.astype(dt)


def _to_e8m0(x: np.ndarray, dt: np.dtype, saturate: bool, round_mode: str) -> np.ndarray:
    # E8M0 holds powers of two 2^-127 .. 2^127 (and NaN); round the exponent per round_mode.
    xf = x.astype(np.float32)
    bits = xf.view(np.uint32)
    exp = ((bits >> 23) & 0xFF).astype(np.int64)
    mant = bits & 0x7FFFFF
    if round_mode == "up":
        exp = exp + (mant != 0)
    elif round_mode == "nearest":
        exp = exp + (mant >= 0x400000)
    special = np.isnan(xf) | (exp > 254)
    exp = np.where(special, 254 if saturate else 255, exp)
    exp = np.where(np.isnan(xf), 255, exp)
    return exp.astype(np.uint8).view(dt)


def cast_to(x: np.ndarray, to: int, saturate: bool = True, round_mode: str = "up") -> np.ndarray:
    """``x`` cast to ONNX type ``to`` with ONNX's rounding/saturation rules."""
    dt = np_dtype(to)
    src = x.dtype
    if dt.kind == "O":
        if src.kind == "O":
            return x.copy()
        return np.vectorize(lambda v: str(v), otypes=[object])(x).astype(object)
    if src.kind == "O":
        return x.astype(np.float64).astype(dt) if dt.kind != "b" else x.astype(dt)
    if dt.name in _F8:
        return _to_float8(x, dt, saturate)
    if dt.name == "float8_e8m0fnu":
        return _to_e8m0(x, dt, saturate, round_mode)
    if dt.name.startswith("float4") or dt.name.startswith("float6"):
        mx = float(ml_dtypes.finfo(dt).max)
        xf = x.astype(np.float32)
        return np.where(np.isnan(xf), xf, np.clip(xf, -mx, mx)).astype(dt)
    if src.name in _F8 or src.name in _NARROW_INT or src.kind == "V" or src.itemsize < 2 and \
            src.kind not in "iub":
        return x.astype(np.float32).astype(dt)
    return x.astype(dt)
