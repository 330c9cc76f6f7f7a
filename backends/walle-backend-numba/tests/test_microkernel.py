"""The register-tiled GEMM micro-kernel (microkernel.py) against a float64 reference: every
tile width (the masked last vector), rows past M, strided operands, residual and clamp,
serial and parallel."""

from __future__ import annotations

from typing import Any

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
           bias.ctypes.data, False, r.ctypes.data if res else 0, n, lo, hi, chunks)
    want = a.astype(np.float64) @ b + bias[:, None] + (r if res else 0)
    want = np.clip(want, lo, hi)
    np.testing.assert_allclose(c[:, :n], want, rtol=1e-5, atol=1e-4 * np.sqrt(k))
    assert np.isnan(c[:, n:]).all()


@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (8, 3, 16), (13, 5, 7), (9, 17, mk.NR + 1),
                                   (17, 64, 2 * mk.NR - 3), (96, 160, 49), (40, 27, 300),
                                   (32, 64, 1100)])  # the last split by column tiles
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
                   bias.ctypes.data, False, 0, 16, lo, hi, 1)
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
                   bias.ctypes.data, False, 0, n, lo, hi, 1)
    np.testing.assert_array_equal(c, np.repeat(a.sum(1, keepdims=True), n, 1))


@pytest.mark.parametrize("n", [5, mk.W + 3, mk.NR, mk.NR + 7])
@pytest.mark.parametrize("parallel", [False, True])
def test_bias_per_column(n: int, parallel: bool) -> None:
    """A Linear layer's bias (one per column of C), clamped: the last vector's masked lanes
    read no bias past N."""
    rng = np.random.default_rng(n)
    m, k = 19, 23
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    c = np.full((m, n), np.nan, np.float32)
    lo, hi = mk.clamp_bounds(1, 0.0, 0.0)
    kernel = mk.gemm.parallel if parallel else mk.gemm.serial
    kernel(a.ctypes.data, k, b.ctypes.data, n, c.ctypes.data, n, m, n, k, bias.ctypes.data,
           True, 0, n, lo, hi, 2 if parallel else 1)
    want = np.maximum(a.astype(np.float64) @ b + bias[None, :], 0)
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("ash,bsh,bias_shape,act", [
    ((1, 128, 64), (64, 96), (96,), ""),  # a transformer's Linear: batch folded into rows
    ((3, 5, 17), (1, 17, 50), (50,), "relu"),
    ((40, 33), (33, 20), None, "clip"),
    ((40, 33), (33, 20), (40, 1), "sigmoid"),  # a bias per row of C
])
def test_matmul_mk_variant_matches_reference(ash: tuple[int, ...], bsh: tuple[int, ...],
                                             bias_shape: tuple[int, ...] | None,
                                             act: str) -> None:
    from walle_backend_numba import matmul

    from walle_core.ir.dtypes import from_numpy
    from walle_core.ir.primitives import MatMul, TensorSpec

    rng = np.random.default_rng(len(ash) + bsh[-1])
    a = rng.standard_normal(ash).astype(np.float32)
    b = rng.standard_normal(bsh).astype(np.float32)
    c = rng.standard_normal(bias_shape).astype(np.float32) if bias_shape else None
    params = (-0.5, 0.5) if act == "clip" else ()
    prim = MatMul(activation=act, act_params=params)
    want = a.astype(np.float64) @ b + (c if c is not None else 0)
    want = {"": want, "relu": np.maximum(want, 0), "clip": np.clip(want, -0.5, 0.5),
            "sigmoid": 1 / (1 + np.exp(-want))}[act]
    f32 = from_numpy(np.dtype(np.float32))
    spec = lambda x: TensorSpec(x.shape, f32)  # noqa: E731
    y = np.full(want.shape, np.nan, np.float32)
    assert matmul.mk_fits(prim, spec(a), spec(b), spec(c) if c is not None else None, spec(y))
    run = matmul.plan(prim, spec(a), spec(b), spec(c) if c is not None else None, spec(y), "mk")
    assert run is not None
    run(a, b, c, y)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    b[0, 0] += 1  # the buffers are read at run time, not captured
    run(a, b, c, y)
    assert not np.allclose(y, want, rtol=1e-4, atol=1e-4) or act == "clip"


@pytest.mark.parametrize("prim_kw,ash,bsh", [
    ({"trans_b": True}, (8, 16), (24, 16)),  # B transposed
    ({}, (2, 8, 16), (2, 16, 24)),  # a batch of B matrices (attention)
    ({"alpha": 2.0}, (8, 16), (16, 24)),
])
def test_matmul_mk_declines_what_it_does_not_cover(prim_kw: dict[str, Any], ash: tuple[int, ...],
                                                   bsh: tuple[int, ...]) -> None:
    from walle_backend_numba import matmul

    from walle_core.ir.dtypes import from_numpy
    from walle_core.ir.primitives import MatMul, TensorSpec

    f32 = from_numpy(np.dtype(np.float32))
    prim = MatMul(**prim_kw)
    m = ash[-2]
    n = bsh[-2] if prim_kw.get("trans_b") else bsh[-1]
    out = TensorSpec((*ash[:-2], m, n), f32)
    assert not matmul.mk_fits(prim, TensorSpec(ash, f32), TensorSpec(bsh, f32), None, out)
    assert matmul.plan(prim, TensorSpec(ash, f32), TensorSpec(bsh, f32), None, out, "mk") is None


def test_the_8_lane_build_is_correct_too(tmp_path: Any) -> None:
    """Hosts without AVX-512 get 8-lane vectors and 16-column tiles; forced here in a
    process of its own (its own numba cache: the compiled kernel freezes the width)."""
    import os
    import subprocess
    import sys

    script = """
import numpy as np
from walle_backend_numba import microkernel as mk
assert mk.W == 8 and mk.NR == 16, (mk.W, mk.NR)
rng = np.random.default_rng(1)
for m, k, n in [(13, 7, 5), (9, 33, 16), (17, 20, 41)]:
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(max(m, n)).astype(np.float32)
    r = rng.standard_normal((m, n)).astype(np.float32)
    c = np.full((m, n), np.nan, np.float32)
    lo, hi = mk.clamp_bounds(1, 0.0, 0.0)
    for col_bias in (False, True):
        res = 0 if col_bias else r.ctypes.data
        mk.gemm.serial(a.ctypes.data, k, b.ctypes.data, n, c.ctypes.data, n, m, n, k,
                       bias.ctypes.data, col_bias, res, n, lo, hi, 1)
        want = a.astype(np.float64) @ b + (bias[None, :n] if col_bias else bias[:m, None])
        want = np.maximum(want + (0 if col_bias else r), 0)
        np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-4)
print("ok")
"""
    env = dict(os.environ, WALLE_MK_LANES="8", NUMBA_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_matmul_mk_into_a_strided_output() -> None:
    """The kernel writes rows N apart; an output view that is not contiguous still gets the
    product (through a contiguous stand-in)."""
    from walle_backend_numba import matmul

    from walle_core.ir.dtypes import from_numpy
    from walle_core.ir.primitives import MatMul, TensorSpec

    f32 = from_numpy(np.dtype(np.float32))
    rng = np.random.default_rng(5)
    a = rng.standard_normal((6, 9)).astype(np.float32)
    b = rng.standard_normal((9, 20)).astype(np.float32)
    big = np.zeros((6, 40), np.float32)
    y = big[:, ::2]
    run = matmul.plan(MatMul(), TensorSpec(a.shape, f32), TensorSpec(b.shape, f32), None,
                      TensorSpec(y.shape, f32), "mk")
    assert run is not None
    run(a, b, None, y)
    np.testing.assert_allclose(big[:, ::2], a @ b, rtol=1e-5, atol=1e-5)
    assert not big[:, 1::2].any()


@pytest.mark.parametrize("variant,k", [("pointwise_mk", 1), ("im2col_mk", 3)])
def test_conv_mk_on_strided_buffers(variant: str, k: int) -> None:
    """Input, output and residual views that are not contiguous go through contiguous
    stand-ins: the result lands in the views and nothing beside them is written."""
    from walle_backend_numba import conv

    from walle_core.ir.dtypes import from_numpy
    from walle_core.ir.primitives import TensorSpec

    f32 = from_numpy(np.dtype(np.float32))
    rng = np.random.default_rng(k)
    x = rng.standard_normal((1, 8, 6, 10)).astype(np.float32)[:, :, :, ::2]  # [1, 8, 6, 5]
    w = rng.standard_normal((12, 8, k, k)).astype(np.float32)
    res = rng.standard_normal((1, 12, 6, 10)).astype(np.float32)[:, :, :, ::2]
    big = np.zeros((1, 12, 6, 10), np.float32)
    y = big[:, :, :, ::2]
    attrs = {"pads": [k // 2] * 4}
    run = conv.plan(attrs, TensorSpec(x.shape, f32), TensorSpec(w.shape, f32), None,
                    TensorSpec(y.shape, f32), variant)
    assert run is not None
    run(x, w, None, y, res)
    want = np.empty(y.shape, np.float32)
    plain = conv.plan(attrs, TensorSpec(x.shape, f32), TensorSpec(w.shape, f32), None,
                      TensorSpec(y.shape, f32), "im2col")
    assert plain is not None
    plain(np.ascontiguousarray(x), w, None, want, np.ascontiguousarray(res))
    np.testing.assert_allclose(big[:, :, :, ::2], want, rtol=1e-4, atol=1e-4)
    assert not big[:, :, :, 1::2].any()


@pytest.mark.parametrize("ash,bsh,act", [
    ((1, 128, 256), (256, 1024), "relu"),  # BERT's FFN: 1 MB of B, packed
    ((37, 1024), (1024, 200), ""),  # a tail panel of 8 columns, rows not a multiple of 8
])
def test_matmul_mk_with_b_packed_in_panels(ash: tuple[int, ...], bsh: tuple[int, ...],
                                           act: str) -> None:
    """B of 512 KB or more runs from a panel-packed copy (matmul.mk_packed_bytes): packed
    once for a constant B, again whenever a writable B's values change."""
    from walle_backend_numba import matmul

    from walle_core.ir.dtypes import from_numpy
    from walle_core.ir.primitives import MatMul, TensorSpec

    f32 = from_numpy(np.dtype(np.float32))
    rng = np.random.default_rng(bsh[1])
    a = rng.standard_normal(ash).astype(np.float32)
    b = rng.standard_normal(bsh).astype(np.float32)
    c = rng.standard_normal(bsh[1]).astype(np.float32)
    y = np.full((*ash[:-1], bsh[1]), np.nan, np.float32)
    assert matmul.mk_packed_bytes(TensorSpec(b.shape, f32)) >= b.nbytes
    run = matmul.plan(MatMul(activation=act), TensorSpec(a.shape, f32), TensorSpec(b.shape, f32),
                      TensorSpec(c.shape, f32), TensorSpec(y.shape, f32), "mk")
    assert run is not None

    def want(bb: np.ndarray) -> np.ndarray:
        r = a.astype(np.float64) @ bb + c
        return np.maximum(r, 0) if act == "relu" else r

    constant = b.copy()
    constant.flags.writeable = False
    run(a, constant, c, y)
    np.testing.assert_allclose(y, want(b), rtol=1e-4, atol=1e-3)
    run(a, b, c, y)  # a writable B with the same values
    np.testing.assert_allclose(y, want(b), rtol=1e-4, atol=1e-3)
    b[3, :] += 1.0  # its values change: packed again
    run(a, b, c, y)
    np.testing.assert_allclose(y, want(b), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("r", [1, 2, mk.TAIL_DOTS, mk.TAIL_DOTS + 1])
@pytest.mark.parametrize("parallel", [False, True])
def test_narrow_last_tile_as_dot_products(r: int, parallel: bool) -> None:
    """A last column tile of at most TAIL_DOTS columns (49 = 48 + 1 pixels) is computed as
    dot products along K: the same bias, residual and clamp, nothing written past N; one
    wider goes through the masked tile. Rows not a multiple of 8, A and B strided."""
    n = 2 * mk.NR + r
    for act in (0, 1, 2):
        _gemm(45, 70, n, True, act, parallel, r * 10 + act)
    _gemm(45, 70, n, False, 0, parallel, r)
    _gemm(300, 33, mk.NR + r, True, 2, parallel, r + 7)  # rows outweigh B: row panels first


def test_tail_columns_of_the_last_task_when_split_by_columns() -> None:
    """N >= 32 M splits the tiles by columns: the tail columns are the last task's."""
    _gemm(16, 64, 30 * mk.NR + 3, True, 1, True, 3)


def test_nan_propagates_through_the_tail_columns() -> None:
    a = np.ones((8, 40), np.float32)
    b = np.ones((40, mk.NR + 2), np.float32)
    b[7, mk.NR + 1] = np.nan
    c = np.zeros((8, mk.NR + 2), np.float32)
    lo, hi = mk.clamp_bounds(2, 0.0, 6.0)
    bias = np.zeros(8, np.float32)
    mk.gemm.serial(a.ctypes.data, 40, b.ctypes.data, mk.NR + 2, c.ctypes.data, mk.NR + 2, 8,
                   mk.NR + 2, 40, bias.ctypes.data, False, 0, 0, lo, hi, 1)
    assert np.isnan(c[:, -1]).all() and (c[:, :-1] == 6).all()


@pytest.mark.parametrize("parallel", [False, True])
def test_tail_columns_with_bias_per_column_and_packed_b(parallel: bool) -> None:
    """The tail's bias per column (a channels-last Conv) and its B columns in the last panel
    of a panel-packed B."""
    rng = np.random.default_rng(5)
    m, k, n = 27, 50, mk.NR + 3
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    res = rng.standard_normal((m, n)).astype(np.float32)
    chunks = 2 if parallel else 1
    lo, hi = mk.clamp_bounds(1, 0.0, 0.0)
    c = np.full((m, n), np.nan, np.float32)
    kernel = mk.gemm.parallel if parallel else mk.gemm.serial
    kernel(a.ctypes.data, k, b.ctypes.data, n, c.ctypes.data, n, m, n, k, bias.ctypes.data,
           True, res.ctypes.data, n, lo, hi, chunks)
    want = np.maximum(a.astype(np.float64) @ b + bias[None, :] + res, 0)
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-4)
    rbias = rng.standard_normal(m).astype(np.float32)
    packed = mk.pack_panels(b)
    c[:] = np.nan
    packed_kernel = mk.gemm_packed.parallel if parallel else mk.gemm_packed.serial
    packed_kernel(a.ctypes.data, k, packed.ctypes.data, c.ctypes.data, n, m, n, k,
                  rbias.ctypes.data, False, 0, n, lo, hi, chunks)
    np.testing.assert_allclose(c, np.maximum(a.astype(np.float64) @ b + rbias[:, None], 0),
                               rtol=1e-5, atol=1e-4)
