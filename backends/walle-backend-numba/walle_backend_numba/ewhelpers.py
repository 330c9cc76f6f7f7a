"""Scalar helpers that generated Elementwise kernels call (compiled once, cached on disk).

Each one reproduces the reference's numpy semantics for one op where numba's plain operator
differs: NaN-propagating max/min (np.maximum), truncating integer division, and an
overflow-free softplus. Plus float32 erf and exp that vectorise: numba's math.erf and np.exp
are one libm call per element (there is no SVML here), 5-10x slower than a SIMD polynomial.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import overload

_jit = numba.njit(cache=True, error_model="numpy")
_f32 = np.float32


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


#: Above this |x| the float32 erf is +-1 (1 - erf(x) is under half an ulp of 1.0f).
ERF32_ONE = np.float32(3.919205904006958)


@_jit
def erf32(x):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
    """erf of a float32, within 0.54 ulp of math.erf; no branch, no libm call, so it vectorises.

    erf(x) = x * P(x^2) / Q(x^2) with P of degree 5 and Q of degree 6, fitted to erf(x)/x for
    least maximum relative error (2.2e-9) on [0, ERF32_ONE]; beyond that it is +-1, NaN stays
    NaN. Evaluated in float64: about twice the cost of float32 arithmetic, but a float32
    evaluation drifts to 7 ulp (4e-7 absolute near +-1, which GELU's 1 + erf(x) turns into
    relative error in its negative tail). Coefficients: Lawson-reweighted linear least squares.
    """
    z = np.float64(x)
    t = z * z
    p = 1.1283791695495253 + t * (0.19241902514804646 + t * (0.055566579290200854 + t * (
        0.004191512960828157 + t * (0.00040521765129352576 + t * 6.569345712169807e-06))))
    q = 1.0 + t * (0.5038603412710275 + t * (0.1171974784842091 + t * (0.01620540339215999 + t * (
        0.0014062426801210851 + t * (7.09735672482424e-05 + t * 2.4790260472559893e-07)))))
    r = np.float32(z * p / q)
    one = np.float32(1.0) if x > 0 else np.float32(-1.0)
    return one if abs(x) >= ERF32_ONE else r


@_jit
def softplus(x, zero):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
    """log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|)); zero typed like x."""
    m = x if x > 0 else zero
    # + x*0: the reference computes logaddexp(x*0, x), which is NaN at +-inf; match it.
    return m + np.log1p(np.exp(-abs(x))) + x * zero


_EXP_LO, _EXP_HI = _f32(-87.33654), _f32(88.72284)  # exp underflows to 0 / overflows to inf


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def exp32(x):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
    """exp of a float32, within 1.01 ulp of math.exp (3 ulp of np.exp); vectorises.

    exp(x) = 2^k * exp(r): k = round(x / ln 2), r = x - k ln 2 in [-ln2/2, ln2/2] (Cody-Waite
    two-part ln 2, k * LN2_HI exact); exp(r) by cephes expf's degree-7 minimax polynomial; 2^k
    built from exponent bits in two halves so k = 128 does not overflow. Results below the
    normal range flush to 0 (np.exp gives denormals there); NaN stays NaN.
    """
    c = _EXP_LO if x < _EXP_LO else x
    c = _EXP_HI if c > _EXP_HI else c
    k = np.floor(c * _f32(1.442695) + _f32(0.5))
    r = c - k * _f32(0.693359375) + k * _f32(2.12194440e-4)
    p = ((((((_f32(1.9875691500e-4) * r + _f32(1.3981999507e-3)) * r + _f32(8.3334519073e-3))
            * r + _f32(4.1665795894e-2)) * r + _f32(1.6666665459e-1)) * r
          + _f32(5.0000001201e-1)) * (r * r) + r + _f32(1.0))
    ki = np.int32(k)
    h = ki >> 1
    y = p * np.int32((h + 127) << 23).view(np.float32) \
        * np.int32((ki - h + 127) << 23).view(np.float32)
    y = _f32(0.0) if x < _EXP_LO else y
    return _f32(np.inf) if x > _EXP_HI else y


def exp(x):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN201
    """np.exp inside numba kernels, with :func:`exp32` for float32 (typed by overload).

    numba's disk cache of a kernel in another module that calls this is keyed by that module's
    file only: after editing exp32, touch the callers (nnops.py) or clear the cache.
    """
    return np.exp(x)


@overload(exp)
def _exp_by_type(x):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
    if x == types.float32:
        return lambda x: exp32(x)
    return lambda x: np.exp(x)
