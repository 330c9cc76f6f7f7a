"""Activations and Softmax / LogSoftmax / Hardmax (both axis semantics)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from walle_core.reference_ops._util import arr, norm_axis
from walle_core.reference_ops.registry import register

Inputs = list[np.ndarray | None]
Attrs = dict[str, Any]


def _act(op: str, fn: Callable[[np.ndarray, Attrs], Any]) -> None:
    def kernel(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
        x = inputs[0]
        assert x is not None
        return [arr(fn(x, attrs)).astype(x.dtype, copy=False)]

    register(op)(kernel)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0, x)


def _gelu(x: np.ndarray, a: Attrs) -> np.ndarray:
    if a.get("approximate", "none") == "tanh":
        # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    from walle_core.reference_ops.elementwise import _erf

    return 0.5 * x * (1 + _erf(x / np.sqrt(2)))


_act("Relu", lambda x, a: np.maximum(x, 0))
_act("LeakyRelu", lambda x, a: np.where(x < 0, x * a.get("alpha", 0.01), x))
_act("Elu", lambda x, a: np.where(x < 0, a.get("alpha", 1.0) * (np.exp(x) - 1), x))
_act("Selu", lambda x, a: a.get("gamma", 1.0507009873554805) * np.where(
    x <= 0, a.get("alpha", 1.6732632423543772) * (np.exp(x) - 1), x))
_act("Celu", lambda x, a: np.maximum(0, x) + np.minimum(
    0, a.get("alpha", 1.0) * (np.exp(x / a.get("alpha", 1.0)) - 1)))
_act("Sigmoid", lambda x, a: _sigmoid(x))
_act("HardSigmoid", lambda x, a: np.clip(a.get("alpha", 0.2) * x + a.get("beta", 0.5), 0, 1))
_act("HardSwish", lambda x, a: x * np.clip(x / 6 + 0.5, 0, 1))
_act("Softplus", lambda x, a: _softplus(x))
_act("Softsign", lambda x, a: x / (1 + np.abs(x)))
_act("Mish", lambda x, a: x * np.tanh(_softplus(x)))
_act("Swish", lambda x, a: x * _sigmoid(a.get("alpha", 1.0) * x))
_act("ThresholdedRelu", lambda x, a: np.where(x > a.get("alpha", 1.0), x, 0))
_act("Gelu", _gelu)
_act("Shrink", lambda x, a: np.where(
    x < -a.get("lambd", 0.5), x + a.get("bias", 0.0),
    np.where(x > a.get("lambd", 0.5), x - a.get("bias", 0.0), 0)))


def _axis_op(op: str, fn: Callable[[np.ndarray, int], np.ndarray]) -> None:
    def kernel(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
        x = inputs[0]
        assert x is not None
        if opset < 13:
            # Old semantics: coerce to 2-D [prod(d[:axis]), prod(d[axis:])], op over dim 1.
            axis = norm_axis(attrs.get("axis", 1), x.ndim)
            flat = x.reshape(int(np.prod(x.shape[:axis])), -1)
            return [fn(flat, 1).reshape(x.shape).astype(x.dtype, copy=False)]
        axis = norm_axis(attrs.get("axis", -1), x.ndim)
        return [fn(x, axis).astype(x.dtype, copy=False)]

    register(op)(kernel)


def softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    s = x - np.max(x, axis=axis, keepdims=True)
    return s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True))


def hardmax(x: np.ndarray, axis: int) -> np.ndarray:
    idx = np.expand_dims(np.argmax(x, axis=axis), axis)
    y = np.zeros_like(x)
    np.put_along_axis(y, idx, 1, axis=axis)
    return y


_axis_op("Softmax", softmax)
_axis_op("LogSoftmax", log_softmax)
_axis_op("Hardmax", hardmax)


@register("SwiGLU")
def swiglu(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    # y = a * sigmoid(alpha * a) * b
    a, b = inputs[0], inputs[1]
    assert a is not None and b is not None
    alpha = attrs.get("alpha", 1.0)
    af = a.astype(np.float32)
    y = af * _sigmoid(alpha * af) * b.astype(np.float32)
    return [y.astype(a.dtype)]
