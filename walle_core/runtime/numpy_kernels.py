"""numpy semantics of the Elementwise vocabulary, Reduce, MatMul and Loop.

These functions are the executable definition of the primitives (docs/engine/primitives.md
describes the same in prose); the reference backend and plan-time constant folding both call
them, so folding can never disagree with execution.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from walle_core.ir.errors import ExecutionError
from walle_core.ir.primitives import Expr, Loop, MatMul, Reduce

Array = Any


def _int_div(a: Array, b: Array) -> Array:
    if np.issubdtype(np.result_type(a, b), np.integer):
        q = np.abs(a) // np.maximum(np.abs(b), 1)
        return np.where((a < 0) != (b < 0), -q, q)
    return np.divide(a, b)


def _erf(x: Array) -> Array:
    x = np.asarray(x)
    if x.dtype == np.float64:
        return np.vectorize(math.erf, otypes=[np.float64])(x)
    # Abramowitz & Stegun 7.1.26 refined: |error| < 1.2e-7, below float32 resolution near 1
    z = np.abs(x.astype(np.float64))
    t = 1.0 / (1.0 + 0.5 * z)
    poly = t * np.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (
        0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (
            1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
    return (np.sign(x) * (1.0 - poly)).astype(x.dtype)


def _shift(a: Array, b: Array, left: bool) -> Array:
    return np.left_shift(a, b) if left else np.right_shift(a, b)


UNARY: dict[str, Callable[[Array], Array]] = {
    "neg": np.negative, "abs": np.abs, "exp": np.exp, "log": np.log, "sqrt": np.sqrt,
    "reciprocal": lambda x: np.divide(1, x) if x.dtype.kind == "f" else 1 // x,
    "floor": np.floor, "ceil": np.ceil, "round": np.round, "sign": np.sign,
    "relu": lambda x: np.maximum(x, 0), "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "tanh": np.tanh, "erf": _erf, "sin": np.sin, "cos": np.cos, "tan": np.tan,
    "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh,
    "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh, "not": np.logical_not,
    "isnan": np.isnan, "isinf": np.isinf, "isposinf": np.isposinf, "isneginf": np.isneginf,
    "softplus": lambda x: np.logaddexp(x * 0, x), "softsign": lambda x: x / (1 + np.abs(x)),
    "bitnot": np.invert, "identity": lambda x: x,
}
BINARY: dict[str, Callable[[Array, Array], Array]] = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": _int_div,
    "pow": np.power, "max": np.maximum, "min": np.minimum, "mod": np.mod, "fmod": np.fmod,
    "eq": np.equal, "lt": np.less, "le": np.less_equal, "gt": np.greater,
    "ge": np.greater_equal, "and": np.logical_and, "or": np.logical_or, "xor": np.logical_xor,
    "bitand": np.bitwise_and, "bitor": np.bitwise_or, "bitxor": np.bitwise_xor,
    "shl": lambda a, b: _shift(a, b, True), "shr": lambda a, b: _shift(a, b, False),
}


def evaluate(expr: Expr, ins: list[Array], shape: tuple[int, ...]) -> Array:
    """Evaluate an Elementwise expression; single-element inputs broadcast as scalars."""
    head = expr[0]
    if head == "in":
        x = ins[expr[1]]
        if x.shape == shape:
            return x
        return x.reshape(()) if x.size == 1 else x.reshape(shape)
    if head == "const":
        return expr[1]
    args = [evaluate(e, ins, shape) for e in expr[1:]]
    if head in UNARY:
        return UNARY[head](np.asarray(args[0]))
    if head == "pow":
        base = np.asarray(args[0])
        result = np.power(base.astype(np.float64) if base.dtype.kind in "iu" else base, args[1])
        return result.astype(base.dtype) if base.dtype.kind in "iu" else result
    if head in BINARY:
        return BINARY[head](args[0], args[1])
    if head == "where":
        return np.where(args[0], args[1], args[2])
    if head == "clip":
        x = np.asarray(args[0])
        return np.minimum(np.maximum(x, args[1]), args[2]).astype(x.dtype)
    raise ExecutionError(f"unknown elementwise op {head!r}")


def _identity(op: str, dtype: np.dtype[Any]) -> Any:
    if dtype.kind == "b":
        return op in ("min", "argmin", "prod")
    if op in ("max", "argmax"):
        return -np.inf if dtype.kind == "f" else np.iinfo(dtype).min
    if op in ("min", "argmin"):
        return np.inf if dtype.kind == "f" else np.iinfo(dtype).max
    if op == "prod":
        return 1
    if op in ("log_sum", "log_sum_exp"):
        return -np.inf
    return 0


def reduce(prim: Reduce, x: Array) -> Array:
    """numpy reduction with ONNX's empty-set identities and stable log-sum-exp."""
    axes, keep, op = prim.axes, prim.keepdims, prim.op
    if any(x.shape[a] == 0 for a in axes):
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape)
                      if keep or i not in axes)
        return np.full(shape, _identity(op, x.dtype), dtype=np.float64 if op == "mean" else
                       (np.int64 if op.startswith("arg") else x.dtype))
    if op in ("argmax", "argmin"):
        fn = np.argmax if op == "argmax" else np.argmin
        axis = axes[0]
        if prim.select_last:
            idx = x.shape[axis] - 1 - fn(np.flip(x, axis), axis=axis, keepdims=keep)
        else:
            idx = fn(x, axis=axis, keepdims=keep)
        return idx.astype(np.int64)
    simple: dict[str, Callable[..., Array]] = {
        "sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min, "prod": np.prod}
    if op in simple:
        return simple[op](x, axis=axes, keepdims=keep)
    if op == "sum_square":
        return np.sum(x * x, axis=axes, keepdims=keep)
    if op == "l1":
        return np.sum(np.abs(x), axis=axes, keepdims=keep)
    if op == "l2":
        return np.sqrt(np.sum(x * x, axis=axes, keepdims=keep))
    if op == "log_sum":
        return np.log(np.sum(x, axis=axes, keepdims=keep))
    if op == "log_sum_exp":
        m = np.max(x, axis=axes, keepdims=True)
        m = np.where(np.isfinite(m), m, 0)
        s = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
        return s if keep else np.squeeze(s, axis=axes)
    raise ExecutionError(f"unknown reduce op {op!r}")


def matmul(prim: MatMul, a: Array, b: Array, bias: Array | None) -> Array:
    if prim.trans_a:
        a = np.swapaxes(a, -1, -2)
    if prim.trans_b:
        b = np.swapaxes(b, -1, -2)
    y = np.matmul(a, b)
    if prim.alpha != 1.0:
        y = y * np.asarray(prim.alpha, dtype=y.dtype)
    if bias is not None:
        y = y + (bias if prim.beta == 1.0 else bias * np.asarray(prim.beta, dtype=bias.dtype))
    return activation(y, prim.activation, prim.act_params)


def activation(y: Array, act: str, params: Sequence[float] = ()) -> Array:
    """An epilogue activation: MatMul's, or one fused into a native kernel's output."""
    if act == "":
        return y
    if act == "relu":
        return np.maximum(y, 0)
    if act == "clip":
        return np.clip(y, params[0], params[1])
    if act == "sigmoid":
        return 1 / (1 + np.exp(-y))
    if act == "tanh":
        return np.tanh(y)
    raise ExecutionError(f"unknown activation {act!r}")


def _grid(size: tuple[int, int, int], strides: tuple[int, int, int]) -> Array:
    i, j, k = np.ix_(*(np.arange(n, dtype=np.int64) for n in size))
    return (i * strides[0] + j * strides[1] + k * strides[2]).reshape(-1)


def loop(prim: Loop, ins: list[Array], out: Array) -> None:
    """Index-driven gather/scatter, vectorised: all iterations become one fancy index."""
    base, src, src_off, dst_off = (ins + [None] * 4)[:4]
    flat = out.reshape(-1)
    if prim.has_base:
        np.copyto(out, base.reshape(out.shape))
    else:
        flat.fill(prim.fill)
    r, n = prim.region, prim.count
    steps = np.arange(n, dtype=np.int64)
    so = r.src_offset + (src_off.reshape(-1)[:n].astype(np.int64) if prim.has_src_offsets
                         else steps * prim.src_step)
    do = r.dst_offset + (dst_off.reshape(-1)[:n].astype(np.int64) if prim.has_dst_offsets
                         else steps * prim.dst_step)
    s_idx = (so[:, None] + _grid(r.size, r.src_strides)[None, :]).reshape(-1)
    d_idx = (do[:, None] + _grid(r.size, r.dst_strides)[None, :]).reshape(-1)
    src_flat = src.reshape(-1)
    for idx, limit, what in ((s_idx, src_flat.size, "source"), (d_idx, flat.size, "output")):
        if idx.size and (idx.min() < 0 or idx.max() >= limit):
            raise ExecutionError(f"index out of range in gather/scatter ({what})")
    values = src_flat[s_idx]
    if prim.reduction == "none":
        flat[d_idx] = values
    else:
        ufunc = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}
        ufunc[prim.reduction].at(flat, d_idx, values)
