"""Region maths: strided views as regions, dim merging, and fusion of view chains."""

from __future__ import annotations

import numpy as np
import pytest

from walle_core.geometry.fusion import _bijective_dims, compose
from walle_core.geometry.regions import is_identity, merge_dims, row_major, view_regions
from walle_core.ir.primitives import Raster, Region
from walle_core.reference_backend import raster


def apply(regions: list[Region], src: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    out = np.zeros(shape, dtype=src.dtype)
    raster(Raster(tuple(regions)), [src], out)
    return out


def test_row_major_and_merge() -> None:
    assert row_major((2, 3, 4)) == (12, 4, 1)
    sizes, src, dst = merge_dims((2, 3, 4), (12, 4, 1), (12, 4, 1))
    assert sizes == [24] and src == [1] and dst == [1]
    sizes, src, dst = merge_dims((2, 1, 3, 4), (12, 99, 1, 3), (12, 12, 4, 1))
    assert sizes == [2, 3, 4]  # size-1 dim dropped, transposed dims kept apart


@pytest.mark.parametrize("perm", [(1, 0, 2), (2, 1, 0), (0, 2, 1, 3), (3, 1, 0, 2),
                                  (4, 2, 0, 1, 3)])
def test_transpose_view_matches_numpy(perm: tuple[int, ...]) -> None:
    shape = (2, 3, 4, 5, 2)[: len(perm)]
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    strides = row_major(shape)
    out_shape = tuple(shape[p] for p in perm)
    regions = view_regions(0, out_shape, tuple(strides[p] for p in perm))
    np.testing.assert_array_equal(apply(regions, x, out_shape), x.transpose(perm))


def test_negative_and_zero_strides() -> None:
    x = np.arange(24, dtype=np.int64).reshape(4, 6)
    # x[::-1, 1::2] broadcast along a new leading axis of 3
    view = x[::-1, 1::2]
    shape = (3, *view.shape)
    regions = view_regions(0, shape, (0, -6, 2), 3 * 6 + 1)
    np.testing.assert_array_equal(apply(regions, x, shape), np.broadcast_to(view, shape))


def test_identity_detection() -> None:
    (r,) = view_regions(0, (4, 5), (5, 1))
    assert is_identity(r, 20)
    (t,) = view_regions(0, (5, 4), (1, 5))
    assert not is_identity(t, 20)


def _random_view(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[Region, tuple]:
    perm = tuple(rng.permutation(len(shape)))
    strides = row_major(shape)
    out_shape = tuple(shape[p] for p in perm)
    (region,) = view_regions(0, out_shape, tuple(strides[p] for p in perm))
    return region, out_shape


@pytest.mark.parametrize("seed", range(20))
def test_fusing_two_transposes_equals_running_both(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(int(d) for d in rng.integers(2, 5, size=3))
    x = rng.standard_normal(shape).astype(np.float32)
    inner, mid_shape = _random_view(rng, shape)
    outer, out_shape = _random_view(rng, mid_shape)
    expected = apply([outer], apply([inner], x, mid_shape), out_shape)
    dims = _bijective_dims(inner, x.size)
    assert dims is not None
    fused = compose(outer, inner, dims, 0)
    assert fused is not None
    np.testing.assert_array_equal(apply([fused], x, out_shape), expected)


def test_slice_of_transpose_fuses() -> None:
    x = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    (inner,) = view_regions(0, (5, 4, 3), (1, 5, 20))  # transpose(2, 1, 0)
    mid = x.transpose(2, 1, 0)
    # slice mid[1:4:2, :, 1:]
    ms = row_major(mid.shape)
    (outer,) = view_regions(0, (2, 4, 2), (2 * ms[0], ms[1], ms[2]), 1 * ms[0] + 1 * ms[2])
    fused = compose(outer, inner, _bijective_dims(inner, 60) or [], 0)
    assert fused is not None
    np.testing.assert_array_equal(apply([fused], x, (2, 4, 2)), mid[1:4:2, :, 1:])


def test_non_affine_chain_is_not_fused() -> None:
    # every other element of a transposed (4, 3) buffer wraps across rows: not one region
    (inner,) = view_regions(0, (4, 3), (1, 4))
    outer = Region(0, 0, (0, 0, 2), 0, (0, 0, 1), (1, 1, 6))
    dims = _bijective_dims(inner, 12)
    assert dims is not None
    assert compose(outer, inner, dims, 0) is None


def test_row_walk_across_inner_dims_is_split_and_fused() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    (inner,) = view_regions(0, (4, 3), (1, 4))  # S = x.T
    outer = Region(0, 0, (0, 6, 1), 0, (0, 6, 1), (1, 2, 6))  # S read as (2, 6)
    fused = compose(outer, inner, _bijective_dims(inner, 12) or [], 0)
    assert fused is not None
    np.testing.assert_array_equal(apply([fused], x, (2, 6)), x.T.reshape(2, 6))
