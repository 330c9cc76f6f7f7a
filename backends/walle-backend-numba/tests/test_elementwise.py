"""Fused Elementwise kernels match the reference on random inputs, op by op and in chains."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from walle_backend_numba.checking import ENGINE, assert_close, run_both

pytestmark = pytest.mark.skipif(not ENGINE, reason="the tensor engine is not in this core")

UNARY_FLOAT = ["neg", "abs", "exp", "log", "sqrt", "reciprocal", "floor", "ceil", "round",
               "sign", "relu", "sigmoid", "tanh", "erf", "sin", "cos", "atan", "softplus",
               "softsign", "identity", "isnan", "isinf", "isposinf", "not"]
BINARY = ["add", "sub", "mul", "div", "pow", "max", "min", "eq", "lt", "le", "gt", "ge",
          "and", "or", "xor"]


def _data(shape: tuple[int, ...], dtype: Any, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        x = rng.standard_normal(shape).astype(dtype) * 3
        x.reshape(-1)[:3] = [np.nan, np.inf, 0.0][: x.size]
        return x
    if np.dtype(dtype).kind == "b":
        return rng.random(shape) > 0.5
    return rng.integers(-9, 9, shape).astype(dtype)


def _check(expr: Any, ins: list[np.ndarray], out_dtype: Any, fast: bool = True) -> None:
    from walle_core.ir.primitives import Elementwise

    shape = max((a.shape for a in ins), key=len)
    got, want, used = run_both(Elementwise(expr), ins, [shape], [out_dtype])
    assert_close(got[0], want[0], rtol=2e-6, atol=1e-6)
    assert used == fast


@pytest.mark.parametrize("op", UNARY_FLOAT)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_unary_float(op: str, dtype: str) -> None:
    x = _data((37, 5), dtype, 1)
    out = "bool" if op in ("isnan", "isinf", "isposinf", "not") else dtype
    _check((op, ("in", 0)), [x], out)


@pytest.mark.parametrize("op", BINARY)
@pytest.mark.parametrize("dtype", ["float32", "int64", "int32"])
def test_binary(op: str, dtype: str) -> None:
    a, b = _data((3, 50), dtype, 2), _data((3, 50), dtype, 3)
    if op == "pow" and dtype != "float32":
        b = np.abs(b) % 4
    out = "bool" if op in ("eq", "lt", "le", "gt", "ge", "and", "or", "xor") else dtype
    _check((op, ("in", 0), ("in", 1)), [a, b], out)


def test_chain_with_scalar_input_and_constants() -> None:
    x = _data((4, 1000), "float32", 4)
    s = np.array([1.5], dtype=np.float32)
    expr = ("mul", ("sigmoid", ("add", ("mul", ("in", 0), ("in", 1)), ("const", 0.25))),
            ("clip", ("in", 0), ("const", -1.0), ("const", 6.0)))
    _check(expr, [x, s], "float32")


def test_where_and_mixed_dtypes_follow_numpy_promotion() -> None:
    c = _data((200,), "bool", 5)
    a = _data((200,), "int32", 6)
    b = _data((200,), "float32", 7)
    _check(("where", ("in", 0), ("in", 1), ("in", 2)), [c, a, b], "float64")
    _check(("add", ("in", 0), ("const", 2.5)), [a], "float64")
    _check(("div", ("in", 0), ("in", 1)), [a, a[::-1].copy()], "int32")


def test_large_input_uses_the_parallel_kernel() -> None:
    x = _data((1 << 16,), "float32", 8)
    _check(("tanh", ("add", ("in", 0), ("const", 1.0))), [x], "float32")


def test_unsupported_dtype_falls_back_to_numpy() -> None:
    x = _data((10,), "float32", 9).astype(np.float16)
    _check(("add", ("in", 0), ("in", 0)), [x], "float16", fast=False)
