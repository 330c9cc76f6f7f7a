"""The register-tiled GEMM micro-kernel (microkernel.py) against a float64 reference: every
tile width (the masked last vector), rows past M, strided operands, residual and clamp,
serial and parallel."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from walle_backend_numba import microkernel as mk


def _gemm(m: int, k: int, n: int, res: bool, act: int, parallel: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k + 2)).astype(np.float32)[:, :k]  # rows k + 2 apart
    b = rng.standard_normal((k, n + 3)).astype(np.float32)[:, :n]  # rows n + 3 apart
    bias = rng.standard_normal(m).astype(np.float32)
    r = rng.standard_normal((m, n)).astype(np.float32)
    c = np.full((m, n + 5), np.nan, np.float32)  # columns past n must stay untouched
    lo, hi = mk.clamp_bounds(act, -0.5, 0.75)
    kernel = mk.gemm.parallel if parallel else mk.gemm.serial
    chunks = max(2, numba.get_num_threads()) if parallel else 1
    kernel(a.ctypes.data, k + 2, b.ctypes.data, n + 3, c.ctypes.data, n + 5, m, n, k,
           bias.ctypes.data, r.ctypes.data if res else 0, n, lo, hi, chunks)
    want = a.astype(np.float64) @ b + bias[:, None] + (r if res else 0)
    want = np.clip(want, lo, hi)
    np.testing.assert_allclose(c[:, :n], want, rtol=1e-5, atol=1e-4 * np.sqrt(k))
    assert np.isnan(c[:, n:]).all()


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (8, 3, 16), (13, 5, 7), (9, 17, mk.NR + 1),
                                   (17, 64, 2 * mk.NR - 3), (96, 160, 49), (40, 27, 300)])
@pytest.mark.parametrize("parallel", [False, True])
def test_matches_float64_reference(m: int, k: int, n: int, parallel: bool) -> None:
    _gemm(m, k, n, False, 0, parallel, m * 100 + n)


@pytest.mark.parametrize("act", [0, 1, 2])
def test_residual_and_clamp_in_the_tile(act: int) -> None:
    _gemm(21, 19, 37, True, act, True, act)
    _gemm(21, 19, 37, False, act, False, act + 10)


def test_clamp_bounds_per_activation() -> None:
    assert mk.clamp_bounds(0, 1.0, 2.0) == (-np.inf, np.inf)
    assert mk.clamp_bounds(1, 1.0, 2.0) == (0.0, np.inf)
    assert mk.clamp_bounds(2, -1.0, 6.0) == (-1.0, 6.0)
    assert mk.clamp_bounds(3, -1.0, 6.0) == (-np.inf, np.inf)  # sigmoid: applied after


def test_nan_propagates_through_the_clamp() -> None:
    """relu(NaN) is NaN, as in the reference (a clamp by comparison keeps it)."""
    a = np.ones((8, 4), np.float32)
    b = np.ones((4, 16), np.float32)
    b[2, 3] = np.nan
    c = np.zeros((8, 16), np.float32)
    lo, hi = mk.clamp_bounds(1, 0.0, 0.0)
    bias = np.zeros(8, np.float32)
    mk.gemm.serial(a.ctypes.data, 4, b.ctypes.data, 16, c.ctypes.data, 16, 8, 16, 4,
                   bias.ctypes.data, 0, 16, lo, hi, 1)
    assert np.isnan(c[:, 3]).all() and (c[:, [0, 1, 2, 4]] == 4).all()


def test_edge_rows_do_not_read_past_a() -> None:
    """An edge tile's rows past M read row 0, never memory after A: A placed at the very end
    of a buffer still gives the right result."""
    m, k, n = 3, 5, 20
    buf = np.zeros(m * k + 1, np.float32)
    a = buf[1:].reshape(m, k)
    a[:] = np.arange(m * k, dtype=np.float32).reshape(m, k)
    b = np.ones((k, n), np.float32)
    c = np.zeros((m, n), np.float32)
    bias = np.zeros(m, np.float32)
    lo, hi = mk.clamp_bounds(0, 0.0, 0.0)
    mk.gemm.serial(a.ctypes.data, k, b.ctypes.data, n, c.ctypes.data, n, m, n, k,
                   bias.ctypes.data, 0, n, lo, hi, 1)
    np.testing.assert_array_equal(c, np.repeat(a.sum(1, keepdims=True), n, 1))
