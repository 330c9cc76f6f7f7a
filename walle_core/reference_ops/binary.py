"""Broadcasting binary and variadic ops: arithmetic, comparison, logical, bitwise.

Arithmetic keeps the dtype of the first input (numpy would promote int8+int8 overflow or
int / int to float); comparisons and logical ops return bool.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from walle_core.reference_ops._util import arr
from walle_core.reference_ops.registry import register

Inputs = list[Any]


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu":
        # Integer Div truncates toward zero (C semantics), not floor.
        q = np.trunc(np.divide(a.astype(np.float64), b.astype(np.float64)))
        return q.astype(a.dtype)
    return np.divide(a, b)


def _pow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return np.power(a.astype(np.int64), b.astype(np.int64)).astype(a.dtype)
    return np.power(a.astype(np.float64), b.astype(np.float64)).astype(a.dtype)


def _arith(op: str, fn: Callable[[np.ndarray, np.ndarray], Any], keep_dtype: bool) -> None:
    def kernel(inputs: Inputs, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
        a, b = inputs[0], inputs[1]
        assert a is not None and b is not None
        y = arr(fn(a, b))
        return [y.astype(a.dtype, copy=False) if keep_dtype else y]

    register(op)(kernel)


_BINARY: list[tuple[str, Callable[[np.ndarray, np.ndarray], Any], bool]] = [
    ("Add", np.add, True), ("Sub", np.subtract, True), ("Mul", np.multiply, True),
    ("Div", _div, True), ("Pow", _pow, True),
    ("Equal", np.equal, False), ("Less", np.less, False), ("Greater", np.greater, False),
    ("LessOrEqual", np.less_equal, False), ("GreaterOrEqual", np.greater_equal, False),
    ("And", np.logical_and, False), ("Or", np.logical_or, False),
    ("Xor", np.logical_xor, False),
    ("BitwiseAnd", np.bitwise_and, True), ("BitwiseOr", np.bitwise_or, True),
    ("BitwiseXor", np.bitwise_xor, True),
]
for _name, _fn, _keep in _BINARY:
    _arith(_name, _fn, _keep)


@register("Mod")
def mod(inputs: Inputs, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    # fmod=0: result has the sign of the divisor (Python %); fmod=1: sign of the dividend (C).
    a, b = inputs[0], inputs[1]
    assert a is not None and b is not None
    if attrs.get("fmod", 0) == 1:
        y = np.fmod(a, b)
    else:
        y = np.mod(a, b)
    return [arr(y).astype(a.dtype, copy=False)]


@register("BitShift")
def bitshift(inputs: Inputs, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    a, b = inputs[0], inputs[1]
    assert a is not None and b is not None
    b = b.astype(a.dtype)
    y = np.left_shift(a, b) if attrs["direction"] == "LEFT" else np.right_shift(a, b)
    return [arr(y).astype(a.dtype, copy=False)]


def _variadic(op: str, fn: Callable[[np.ndarray, np.ndarray], Any], mean: bool = False) -> None:
    def kernel(inputs: Inputs, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
        xs = [x for x in inputs if x is not None]
        y = xs[0]
        for x in xs[1:]:
            y = fn(y, x)
        if mean:
            y = y / len(xs)
        return [arr(y).astype(xs[0].dtype, copy=False)]

    register(op)(kernel)


_variadic("Max", np.maximum)
_variadic("Min", np.minimum)
_variadic("Sum", np.add)
_variadic("Mean", np.add, mean=True)


@register("Where")
def where(inputs: Inputs, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    c, x, y = inputs[0], inputs[1], inputs[2]
    assert x is not None
    return [arr(np.where(c, x, y)).astype(x.dtype, copy=False)]


@register("PRelu")
def prelu(inputs: Inputs, attrs: dict[str, Any], opset: int) -> list[np.ndarray]:
    x, slope = inputs[0], inputs[1]
    assert x is not None
    return [arr(np.where(x < 0, x * slope, x)).astype(x.dtype, copy=False)]
