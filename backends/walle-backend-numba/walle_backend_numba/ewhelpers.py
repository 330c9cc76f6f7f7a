"""Scalar helpers that generated Elementwise kernels call (compiled once, cached on disk).

Each one reproduces the reference's numpy semantics for one op where numba's plain operator
differs: NaN-propagating max/min (np.maximum), truncating integer division, the reference's
float32 erf approximation, and an overflow-free softplus.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_jit = numba.njit(cache=True, error_model="numpy")


@_jit
def fmax(a, b):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
    """np.maximum: NaN wins over any number."""
    return a if (a >= b or a != a) else b


@_jit
def fmin(a, b):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
    """np.minimum: NaN wins over any number."""
    return a if (a <= b or a != a) else b


@_jit
def idiv(a, b):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
    """Integer division truncating toward zero; a divisor of 0 acts as 1 (reference rule)."""
    d = abs(b)
    q = abs(a) // (d if d > 1 else 1)
    return -q if (a < 0) != (b < 0) else q


@_jit
def erf32(x):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
    """Abramowitz & Stegun 7.1.26 refined, in float64, exactly as the reference's float32 erf."""
    z = abs(np.float64(x))
    t = 1.0 / (1.0 + 0.5 * z)
    poly = t * math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (
        0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (
            1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
    s = 1.0 if x > 0 else (-1.0 if x < 0 else 0.0)
    if x != x:
        return np.float32(x)
    return np.float32(s * (1.0 - poly))


@_jit
def softplus(x, zero):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
    """log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|)); zero typed like x."""
    m = x if x > 0 else zero
    # + x*0: the reference computes logaddexp(x*0, x), which is NaN at +-inf; match it.
    return m + np.log1p(np.exp(-abs(x))) + x * zero

