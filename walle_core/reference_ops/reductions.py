"""Reductions (Reduce*), arg-reductions (ArgMax/ArgMin) and cumulative ops (CumSum/CumProd).

Axes moved from attribute to input at opset 13 for ReduceSum and at 18 for the others; an empty
axes list reduces everything unless ``noop_with_empty_axes`` is set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from walle_core.reference_ops._util import arr, ints, norm_axes, norm_axis
from walle_core.reference_ops.registry import register

Inputs = list[np.ndarray | None]
Attrs = dict[str, Any]


def _reduce(op: str, fn: Callable[[np.ndarray, tuple[int, ...], bool], Any],
            input_axes_since: int) -> None:
    def kernel(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
        x = inputs[0]
        assert x is not None
        keep = bool(attrs.get("keepdims", 1))
        if opset >= input_axes_since:
            axes = ints(inputs[1]) if len(inputs) > 1 else None
        else:
            axes = attrs.get("axes")
        if not axes:
            if attrs.get("noop_with_empty_axes", 0):
                return [x.copy()]
            axes_t = tuple(range(x.ndim))
        else:
            axes_t = norm_axes(axes, x.ndim)
        if x.size == 0 and op in ("ReduceMax", "ReduceMin"):
            # Empty reduction: identity element (-inf / +inf or the integer extremes).
            shape = [1 if i in axes_t else d for i, d in enumerate(x.shape)]
            if not keep:
                shape = [d for i, d in enumerate(x.shape) if i not in axes_t]
            fill: Any
            if x.dtype.kind == "b":
                fill = op == "ReduceMin"
            elif x.dtype.kind == "f":
                fill = -np.inf if op == "ReduceMax" else np.inf
            else:
                info = np.iinfo(x.dtype)
                fill = info.min if op == "ReduceMax" else info.max
            return [np.full(shape, fill, dtype=x.dtype)]
        return [arr(fn(x, axes_t, keep)).astype(x.dtype, copy=False)]

    register(op)(kernel)


def _log_sum_exp(x: np.ndarray, ax: tuple[int, ...], k: bool) -> np.ndarray:
    xf = x.astype(np.float64)
    m = np.max(xf, axis=ax, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0)
    y = np.log(np.sum(np.exp(xf - m), axis=ax, keepdims=True)) + m
    return y if k else np.squeeze(y, axis=ax)


_reduce("ReduceSum", lambda x, ax, k: np.sum(x, axis=ax, keepdims=k), 13)
_reduce("ReduceMean", lambda x, ax, k: np.mean(x, axis=ax, keepdims=k), 18)
_reduce("ReduceMax", lambda x, ax, k: np.max(x, axis=ax, keepdims=k), 18)
_reduce("ReduceMin", lambda x, ax, k: np.min(x, axis=ax, keepdims=k), 18)
_reduce("ReduceProd", lambda x, ax, k: np.prod(x, axis=ax, keepdims=k), 18)
_reduce("ReduceL1", lambda x, ax, k: np.sum(np.abs(x), axis=ax, keepdims=k), 18)
_reduce("ReduceL2", lambda x, ax, k: np.sqrt(np.sum(np.square(x.astype(np.float64)), axis=ax,
                                                    keepdims=k)), 18)
_reduce("ReduceSumSquare", lambda x, ax, k: np.sum(np.square(x), axis=ax, keepdims=k), 18)
_reduce("ReduceLogSum", lambda x, ax, k: np.log(np.sum(x, axis=ax, keepdims=k)), 18)
_reduce("ReduceLogSumExp", _log_sum_exp, 18)


def _arg(op: str, fn: Callable[..., np.ndarray]) -> None:
    def kernel(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
        x = inputs[0]
        assert x is not None
        axis = norm_axis(attrs.get("axis", 0), x.ndim)
        if attrs.get("select_last_index", 0):
            # Last occurrence = (n-1) - first occurrence in the reversed axis.
            y = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis)
        else:
            y = fn(x, axis=axis)
        if attrs.get("keepdims", 1):
            y = np.expand_dims(y, axis)
        return [arr(y, np.int64)]

    register(op)(kernel)


_arg("ArgMax", np.argmax)
_arg("ArgMin", np.argmin)


def _cumulative(op: str, fn: Callable[..., np.ndarray], identity: int) -> None:
    def kernel(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
        x, axis_t = inputs[0], inputs[1]
        assert x is not None
        axis = norm_axis(int(np.asarray(axis_t).reshape(-1)[0]), x.ndim)
        y = np.flip(x, axis) if attrs.get("reverse", 0) else x
        c = fn(y, axis=axis, dtype=x.dtype)
        if attrs.get("exclusive", 0):
            # Shift by one along the axis, filling with the identity element.
            pad = np.full_like(np.take(c, [0], axis=axis), identity)
            c = np.concatenate([pad, np.take(c, range(c.shape[axis] - 1), axis=axis)], axis)
        if attrs.get("reverse", 0):
            c = np.flip(c, axis)
        return [arr(c).astype(x.dtype, copy=False)]

    register(op)(kernel)


_cumulative("CumSum", np.cumsum, 0)
_cumulative("CumProd", np.cumprod, 1)
