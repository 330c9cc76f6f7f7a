"""The vectorising float32 erf and exp stay within their stated ulp bounds of libm (math.*)."""

from __future__ import annotations

import math

import numpy as np
import pytest

numba = pytest.importorskip("numba")


def _ulps(fn: object, ref: object, x: np.ndarray) -> np.ndarray:
    @numba.njit
    def both(xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        got = np.empty(xs.size)
        want = np.empty(xs.size)
        for i in range(xs.size):
            got[i] = fn(xs[i])  # type: ignore[operator]
            want[i] = ref(np.float64(xs[i]))  # type: ignore[operator]
        return got, want

    got, want = both(x)
    return np.abs(got - want) / np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)


def _grid(lo: float, hi: float) -> np.ndarray:
    """Every 997th float32 in [lo, hi] and its negation, plus lo and hi."""
    a, b = np.float32(lo).view(np.int32), np.float32(hi).view(np.int32)
    x = np.arange(a, b, 997, dtype=np.int32).view(np.float32)
    return np.concatenate([x, -x, np.float32([lo, hi])])


def test_erf32_within_0_54_ulp_of_math_erf() -> None:
    from walle_backend_numba.ewhelpers import erf32

    assert _ulps(erf32, math.erf, _grid(1e-37, 6.0)).max() <= 0.54


def test_exp32_within_1_01_ulp_of_math_exp() -> None:
    from walle_backend_numba.ewhelpers import exp32

    x = np.concatenate([_grid(1e-37, 87.3), _grid(87.3, 88.72)[:-1]])
    x = x[x > -87.33]  # below: flushed to 0 (denormals), checked below
    assert _ulps(exp32, math.exp, x).max() <= 1.01


def test_erf32_and_exp32_special_values() -> None:
    from walle_backend_numba.ewhelpers import erf32, exp32

    erf = [erf32(np.float32(v)) for v in (np.nan, np.inf, -np.inf, 0.0, 4.0, -10.0)]
    assert math.isnan(erf[0]) and erf[1:] == [1.0, -1.0, 0.0, 1.0, -1.0]
    assert math.copysign(1.0, erf32(np.float32(-0.0))) == -1.0
    exp = [exp32(np.float32(v)) for v in (np.nan, np.inf, -np.inf, 0.0, -1e4, 89.0)]
    assert math.isnan(exp[0]) and exp[1:] == [math.inf, 0.0, 1.0, 0.0, math.inf]
