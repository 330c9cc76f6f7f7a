"""The register transpose of one W x W tile (transpose.py), edges and epilogue included."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from walle_backend_numba import transpose

W = transpose.W


@numba.njit(cache=False)
def _plain(src, dst, nr, nc):  # type: ignore[no-untyped-def]
    transpose.plain(src.ctypes.data, src.shape[1], dst.ctypes.data, dst.shape[1], nr, nc,
                    0, 0, 0, np.float32(0), np.float32(0))


@numba.njit(cache=False)
def _epilogue(src, dst, bias, res, nr, nc, lo, hi):  # type: ignore[no-untyped-def]
    transpose.epilogue_res(src.ctypes.data, src.shape[1], dst.ctypes.data, dst.shape[1], nr,
                           nc, bias.ctypes.data, res.ctypes.data, res.shape[1], lo, hi)


@pytest.mark.parametrize("nr", [1, 5, W])
@pytest.mark.parametrize("nc", [1, 7, W])
def test_tile_transposes_and_leaves_everything_else(nr: int, nc: int) -> None:
    rng = np.random.default_rng(nr * 31 + nc)
    src = rng.standard_normal((W + 3, W + 5)).astype(np.float32)
    dst = np.full((W + 2, W + 9), 7.0, np.float32)
    _plain(src, dst, nr, nc)
    want = np.full_like(dst, 7.0)
    want[:nc, :nr] = src[:nr, :nc].T
    np.testing.assert_array_equal(dst, want)

    bias = rng.standard_normal(W).astype(np.float32)
    res = rng.standard_normal((W, W + 1)).astype(np.float32)
    src[0, 0] = np.nan  # NaN passes the clamp, as the tile kernels' does
    dst = np.full((W + 2, W + 9), 7.0, np.float32)
    _epilogue(src, dst, bias, res, nr, nc, np.float32(0), np.float32(1.5))
    want = np.full_like(dst, 7.0)
    with np.errstate(invalid="ignore"):
        want[:nc, :nr] = np.clip(src[:nr, :nc].T + bias[:nc, None] + res[:nc, :nr], 0, 1.5)
    np.testing.assert_allclose(dst, want, atol=1e-6)
    assert np.isnan(dst[0, 0])
