"""Unary elementwise math: y = f(x), dtype preserved (except the boolean predicates)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from walle_core.reference_ops._util import arr
from walle_core.reference_ops.registry import register

Inputs = list[Any]


def _unary(op: str, fn: Callable[[np.ndarray], Any]) -> None:
    def kernel(inputs: Inputs, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
        x = inputs[0]
        assert x is not None
        return [arr(fn(x)).astype(x.dtype, copy=False)]

    register(op)(kernel)


def _erf(x: np.ndarray) -> np.ndarray:
    # math.erf per element: numpy has no erf and scipy is not a core dependency.
    import math

    flat = np.asarray(x, dtype=np.float64).reshape(-1)
    return np.array([math.erf(v) for v in flat], dtype=np.float64).reshape(x.shape)


_UNARY: dict[str, Callable[[np.ndarray], Any]] = {
    "Abs": np.abs, "Neg": np.negative, "Ceil": np.ceil, "Floor": np.floor,
    "Round": np.round,  # round half to even, as ONNX specifies
    "Sqrt": np.sqrt, "Exp": np.exp, "Log": np.log, "Reciprocal": np.reciprocal,
    "Sin": np.sin, "Cos": np.cos, "Tan": np.tan, "Asin": np.arcsin, "Acos": np.arccos,
    "Atan": np.arctan, "Sinh": np.sinh, "Cosh": np.cosh, "Tanh": np.tanh, "Asinh": np.arcsinh,
    "Acosh": np.arccosh, "Atanh": np.arctanh, "Sign": np.sign, "Erf": _erf,
}
for _name, _fn in _UNARY.items():
    _unary(_name, _fn)


@register("Identity")
def identity(inputs: Inputs, attrs: dict[str, Any], opset: int) -> list[Any]:
    x = inputs[0]
    return [x.copy() if isinstance(x, np.ndarray) else x]


@register("Not")
def not_(inputs: Inputs, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    return [arr(np.logical_not(inputs[0]))]


@register("IsNaN")
def isnan(inputs: Inputs, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    return [arr(np.isnan(x.astype(np.float32) if x.dtype.kind == "V" else x))]


@register("IsInf")
def isinf(inputs: Inputs, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    x = inputs[0]
    assert x is not None
    pos = attrs.get("detect_positive", 1)
    neg = attrs.get("detect_negative", 1)
    y = np.isinf(x) & (((x > 0) & bool(pos)) | ((x < 0) & bool(neg)))
    return [arr(y)]


@register("BitwiseNot")
def bitwise_not(inputs: Inputs, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    return [arr(np.invert(inputs[0]))]


@register("Clip")
def clip(inputs: Inputs, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    # opset < 11: min/max attributes; later: optional inputs 1 and 2.
    x = inputs[0]
    assert x is not None
    if opset < 11:
        lo: Any = attrs.get("min", -np.inf)
        hi: Any = attrs.get("max", np.inf)
    else:
        lo = inputs[1] if len(inputs) > 1 and inputs[1] is not None else None
        hi = inputs[2] if len(inputs) > 2 and inputs[2] is not None else None
    y = x
    if lo is not None:
        y = np.maximum(y, lo)
    if hi is not None:
        y = np.minimum(y, hi)
    return [arr(y).astype(x.dtype, copy=False)]
