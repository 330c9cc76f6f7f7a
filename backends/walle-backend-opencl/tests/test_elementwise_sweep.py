"""Every Elementwise op on several dtypes against the reference (slow: ~250 kernel builds)."""

from __future__ import annotations

import numpy as np
import pytest
from harness import compare, out_spec

from walle_core.ir.primitives import BINARY_OPS, UNARY_OPS, Elementwise

pytestmark = pytest.mark.slow
RNG = np.random.default_rng(5)


def values(dtype: str) -> np.ndarray:
    if dtype == "bool":
        return RNG.random(16) > 0.5
    if dtype.startswith("uint"):
        return RNG.integers(0, 9, 16).astype(dtype)
    if dtype.startswith("int"):
        return RNG.integers(-9, 9, 16).astype(dtype)
    x = (RNG.standard_normal(16) * 2).astype(dtype)
    x[:6] = [0.5, -0.5, 2.5, np.nan, np.inf, -np.inf]
    return x


def result_dtype(fn: object) -> str | None:
    try:
        with np.errstate(all="ignore"):
            return str(np.asarray(fn()).dtype)  # type: ignore[operator]
    except Exception:
        return None


@pytest.mark.parametrize("dtype", ["float32", "int32", "uint8", "bool"])
@pytest.mark.parametrize("op", sorted(UNARY_OPS))
def test_unary(opencl, op: str, dtype: str) -> None:  # type: ignore[no-untyped-def]
    from walle_core.runtime import numpy_kernels as nk

    x = values(dtype)
    out = result_dtype(lambda: nk.evaluate((op, ("in", 0)), [x], x.shape))
    if out is None or out == "float16":
        pytest.skip(f"numpy has no {op} on {dtype}")
    compare(opencl, Elementwise((op, ("in", 0))), [x], out_spec((16,), out),
            rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("pair", [("float32", "float32"), ("int32", "int32"),
                                  ("int64", "int32"), ("uint8", "int8"), ("bool", "bool"),
                                  ("float32", "int64")])
@pytest.mark.parametrize("op", sorted(BINARY_OPS))
def test_binary(opencl, op: str, pair: tuple[str, str]) -> None:  # type: ignore[no-untyped-def]
    from walle_core.runtime import numpy_kernels as nk

    a, b = values(pair[0]), values(pair[1])
    if op in ("shl", "shr") and b.dtype.kind in "iu":
        b = np.abs(b) % 5
    out = result_dtype(lambda: nk.evaluate((op, ("in", 0), ("in", 1)), [a, b], a.shape))
    if out is None or out == "float16":
        pytest.skip(f"numpy has no {op} on {pair}")
    compare(opencl, Elementwise((op, ("in", 0), ("in", 1))), [a, b], out_spec((16,), out),
            rtol=2e-6, atol=2e-6)
