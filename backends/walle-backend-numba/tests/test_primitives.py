"""Raster, Reduce, MatMul, native Conv (and numpy-path primitives) match the reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from walle_backend_numba.checking import ENGINE, assert_close, run_both, spec

pytestmark = pytest.mark.skipif(not ENGINE, reason="the tensor engine is not in this core")
RNG = np.random.default_rng(0)


def _rand(*shape: int, dtype: Any = np.float32) -> np.ndarray:
    return RNG.standard_normal(shape).astype(dtype)


# ---- Raster ----------------------------------------------------------------------------------

def _region(src: int, so: int, ss: tuple[int, int, int], do: int, ds: tuple[int, int, int],
            size: tuple[int, int, int]) -> Any:
    from walle_core.ir.primitives import Region

    return Region(src, so, ss, do, ds, size)


@pytest.mark.parametrize("accumulate", [False, True])
@pytest.mark.parametrize("fill", [None, 0.0])
def test_raster_contiguous_transpose_and_strided(fill: Any, accumulate: bool) -> None:
    from walle_core.ir.primitives import Raster

    x, y = _rand(64, 96), _rand(4, 5, 6)
    regions = (
        _region(0, 0, (0, 96, 1), 0, (0, 96, 1), (1, 64, 96)),        # flat copy
        _region(0, 0, (0, 1, 96), 0, (0, 64, 1), (1, 96, 64)),         # 2-D transpose
        _region(1, 1, (30, 1, 6), 7, (3, 40, 1), (4, 2, 3)),           # strided 3-D
    )
    prim = Raster(regions, fill=fill, accumulate=accumulate)
    got, want, fast = run_both(prim, [x, y], [(96, 64)], [np.float32])
    assert fast
    assert_close(got[0], want[0])


def test_raster_broadcast_and_many_regions() -> None:
    from walle_core.ir.primitives import Raster

    x = _rand(3, 1, 5)
    regions = tuple(_region(0, c * 5, (0, 0, 1), c * 35, (0, 5, 1), (1, 7, 5)) for c in range(3))
    got, want, fast = run_both(Raster(regions), [x], [(3, 7, 5)], [np.float32])
    assert fast
    assert_close(got[0], want[0])


@pytest.mark.parametrize("accumulate", [False, True])
def test_raster_small_concat_in_one_call(accumulate: bool) -> None:
    """A small Raster over several sources (a concat: flat, contiguous-row, gathered,
    broadcast and reversed regions) is one ``copy_sources`` call, as the reference computes."""
    from walle_core.ir.primitives import Raster

    a, b, c = _rand(50, 18), _rand(50, 18), _rand(1, 36)
    regions = (
        _region(0, 0, (0, 18, 1), 0, (0, 73, 1), (1, 50, 18)),       # rows of a
        _region(1, 0, (0, 18, 1), 18, (0, 73, 1), (1, 50, 18)),      # rows of b
        _region(2, 0, (0, 0, 1), 36, (0, 73, 1), (1, 50, 36)),       # c broadcast to 50 rows
        _region(0, 17, (0, 18, -1), 72, (0, 73, 0), (1, 50, 1)),     # a's last column
        _region(2, 0, (0, 0, 0), 3650, (0, 0, 1), (1, 1, 4)),        # one value 4 times
        _region(1, 0, (0, 0, 2), 3654, (0, 0, 1), (1, 1, 9)),        # every other of b's row
        _region(0, 17, (0, 0, -1), 3663, (0, 0, 1), (1, 1, 18)),     # a's first row reversed
    )
    prim = Raster(regions, fill=0.0 if accumulate else None, accumulate=accumulate)
    got, want, fast = run_both(prim, [a, b, c], [(3681,)], [np.float32])
    assert fast
    assert_close(got[0], want[0])


def test_raster_small_concat_mixed_buffers() -> None:
    """The one-call concat needs its sources all writable or all constant (one array type in
    numba's tuple); a mix goes through a call per source, with the same result."""
    from walle_backend_numba import NumbaBackend, raster

    from walle_core.ir.primitives import Raster, Step

    a, b = _rand(6, 5), _rand(6, 3)
    regions = (_region(0, 0, (0, 5, 1), 0, (0, 8, 1), (1, 6, 5)),
               _region(1, 0, (0, 3, 1), 5, (0, 8, 1), (1, 6, 3)))
    prim = Raster(regions)
    run = raster.plan(prim)
    assert run is not None and run.__qualname__.startswith("_plan_multi")
    backend = NumbaBackend(threads=1)
    fn = backend.compile(Step(prim, [0, 1], [2]), [spec(a), spec(b)],
                         [spec(np.zeros((6, 8), np.float32))])
    want = np.concatenate([a, b], axis=1)
    for pair in ([backend.constant(a), b.copy()], [a.copy(), b.copy()],
                 [backend.constant(a), backend.constant(b)]):
        out = np.full((6, 8), 7, np.float32)
        fn(pair, [out])
        np.testing.assert_array_equal(out, want)


def test_raster_many_flat_copies() -> None:
    """More than MANY_FLAT flat copies (one row broadcast to every row, as BERT's segment
    embedding) go through the table kernel; a big one stays a memcpy."""
    from walle_backend_numba import raster

    from walle_core.ir.primitives import Raster

    row, big = _rand(256), _rand(1 << 16)
    regions = tuple(_region(0, 0, (0, 0, 1), k * 256, (0, 0, 1), (1, 1, 256)) for k in range(12))
    regions += (_region(1, 0, (0, 0, 1), 12 * 256, (0, 0, 1), (1, 1, 1 << 16)),)
    assert len(regions) - 1 > raster.MANY_FLAT and (1 << 16) >= raster.FLAT_BIG
    got, want, fast = run_both(Raster(regions), [row, big], [(12 * 256 + (1 << 16),)],
                               [np.float32])
    assert fast
    assert_close(got[0], want[0])
    np.testing.assert_array_equal(got[0][:12 * 256].reshape(12, 256), np.tile(row, (12, 1)))


def test_raster_large_parallel_int64() -> None:
    from walle_core.ir.primitives import Raster

    x = RNG.integers(0, 100, (256, 512)).astype(np.int64)
    regions = (_region(0, 0, (0, 1, 512), 0, (0, 256, 1), (1, 512, 256)),)
    got, want, fast = run_both(Raster(regions), [x], [(512, 256)], [np.int64])
    assert fast
    assert_close(got[0], want[0])


# ---- Reduce ----------------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["sum", "mean", "max", "min", "sum_square", "l1", "l2"])
@pytest.mark.parametrize("axes", [(2,), (1,), (0, 1), (1, 2), (0, 2)])
def test_reduce(op: str, axes: tuple[int, ...]) -> None:
    from walle_core.ir.primitives import Reduce

    x = _rand(6, 7, 33)
    x[0, 0, 0] = np.nan
    want_shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    got, want, fast = run_both(Reduce(op, axes), [x], [want_shape], [np.float32])
    assert fast == (axes != (0, 2))
    assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["argmax", "prod", "log_sum_exp"])
def test_reduce_numpy_path(op: str) -> None:
    from walle_core.ir.primitives import Reduce

    x = _rand(4, 9)
    dtype = np.int64 if op == "argmax" else np.float32
    got, want, _ = run_both(Reduce(op, (1,), keepdims=False), [x], [(4,)], [dtype])
    assert_close(got[0], want[0])


# ---- MatMul ----------------------------------------------------------------------------------

@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("act", ["", "relu", "clip", "sigmoid", "tanh"])
def test_matmul_epilogue(trans_a: bool, trans_b: bool, act: str) -> None:
    from walle_core.ir.primitives import MatMul

    m, k, n = 17, 33, 20
    a = _rand(k, m) if trans_a else _rand(m, k)
    b = _rand(n, k) if trans_b else _rand(k, n)
    bias = _rand(n)
    prim = MatMul(trans_a, trans_b, alpha=0.5, beta=2.0, activation=act,
                  act_params=(-1.0, 1.0) if act == "clip" else ())
    got, want, fast = run_both(prim, [a, b, bias], [(m, n)], [np.float32])
    assert fast
    assert_close(got[0], want[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bias_shape", [None, (1,), (5, 1), (3, 5, 7)])
def test_matmul_batched_bias_kinds(bias_shape: tuple[int, ...] | None) -> None:
    from walle_core.ir.primitives import MatMul

    a, b = _rand(3, 5, 8), _rand(8, 7)
    ins = [a, b, _rand(*bias_shape) if bias_shape else None]
    got, want, fast = run_both(MatMul(), ins, [(3, 5, 7)], [np.float32])
    assert fast
    assert_close(got[0], want[0], rtol=1e-4, atol=1e-5)


def test_matmul_integer_runs_on_numpy() -> None:
    from walle_core.ir.primitives import MatMul

    a = RNG.integers(-5, 5, (4, 6)).astype(np.int64)
    got, want, fast = run_both(MatMul(), [a, a.T.copy(), None], [(4, 4)], [np.int64])
    assert not fast
    assert_close(got[0], want[0])


# ---- Cast and Loop run on numpy ---------------------------------------------------------------

def test_cast_and_loop() -> None:
    from walle_core.ir.dtypes import int32
    from walle_core.ir.primitives import Cast, Loop

    x = _rand(5, 4)
    got, want, _ = run_both(Cast(int32), [x * 10], [(5, 4)], [np.int32])
    assert_close(got[0], want[0])
    idx = np.array([3, 0, 3], dtype=np.int64)
    prim = Loop(count=3, region=_region(1, 0, (0, 0, 1), 0, (0, 0, 1), (1, 1, 4)),
                has_src_offsets=True, dst_step=4)
    got, want, _ = run_both(prim, [None, x, idx * 4], [(3, 4)], [np.float32])  # type: ignore[list-item]
    assert_close(got[0], want[0])


@pytest.mark.parametrize("src,dst,fast", [
    (np.int64, np.float32, True), (np.float64, np.float32, True), (np.bool_, np.float32, True),
    (np.int32, np.int64, True), (np.float32, np.int32, False), (np.float32, np.bool_, False)])
def test_cast_kinds(src: Any, dst: Any, fast: bool) -> None:
    """Numeric casts are numpy's conversion straight into the output; float to integer or
    bool keeps the reference's path (NaN there warns under numpy's errstate otherwise)."""
    from walle_core.ir.dtypes import from_numpy
    from walle_core.ir.primitives import Cast

    x = (RNG.standard_normal((3, 7)) * 50).astype(src)
    if np.dtype(src).kind == "f":
        x[0, 0] = np.nan if np.dtype(dst).kind == "f" else 1e20
    got, want, used_kernel = run_both(Cast(from_numpy(np.dtype(dst))), [x], [(3, 7)], [dst])
    assert used_kernel == fast
    np.testing.assert_array_equal(got[0], want[0])


# ---- native Conv -----------------------------------------------------------------------------

CONVS = [  # x shape, w shape, attrs, y spatial
    ((1, 8, 9, 9), (16, 8, 3, 3), {"pads": [1, 1, 1, 1]}, (9, 9)),
    ((2, 6, 10, 7), (4, 3, 3, 2), {"group": 2, "strides": [2, 1], "pads": [0, 1, 1, 0]},
     (5, 7)),
    ((1, 8, 12, 12), (8, 1, 3, 3), {"group": 8, "pads": [1, 1, 1, 1], "strides": [2, 2]},
     (6, 6)),
    ((2, 5, 7, 7), (5, 1, 5, 5), {"group": 5, "pads": [2, 2, 2, 2], "dilations": [1, 1]},
     (7, 7)),
    ((1, 16, 6, 6), (24, 16, 1, 1), {}, (6, 6)),
    ((1, 4, 8, 8), (6, 4, 3, 3), {"dilations": [2, 2], "auto_pad": "SAME_UPPER"}, (8, 8)),
]


@pytest.mark.parametrize("xs,ws,attrs,out", CONVS)
@pytest.mark.parametrize("with_bias", [False, True])
def test_native_conv(xs: tuple[int, ...], ws: tuple[int, ...], attrs: dict[str, Any],
                     out: tuple[int, int], with_bias: bool) -> None:
    from walle_core.ir.primitives import Kernel

    x, w = _rand(*xs), _rand(*ws)
    ins = [x, w] + ([_rand(ws[0])] if with_bias else [])
    prim = Kernel("Conv", "", dict(attrs, kernel_shape=list(ws[2:])), 17)
    got, want, fast = run_both(prim, ins, [(xs[0], ws[0], *out)], [np.float32])
    assert fast
    assert_close(got[0], want[0], rtol=1e-4, atol=1e-4)
