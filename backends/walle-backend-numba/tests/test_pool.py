"""GEMMs on numba's pool (pool.py) give np.matmul's result for every layout they accept, and
fall back to np.matmul for the rest; the thread policy puts BLAS at one thread with it."""

from __future__ import annotations

import threading
from typing import Any

import numba
import numpy as np
import pytest
from walle_backend_numba import pool, threads

pytestmark = pytest.mark.skipif(not pool.available(),
                                reason="numpy's BLAS is not scipy_openblas: no pool GEMM")

CASES = [
    ((64, 576), (576, 3136), False, False),
    ((5, 7), (7, 3), False, False),
    ((1, 256), (256, 1000), False, False),
    ((4, 128, 64), (4, 64, 128), False, False),
    ((1, 4, 128, 64), (1, 4, 128, 64), False, True),  # attention's Q @ K^T
    ((3, 8, 5), (5, 6), False, False),  # batch broadcast on the left
    ((8, 5), (2, 3, 5, 6), False, False),  # and on the right, two batch axes
    ((10, 20), (30, 20), False, True),
    ((20, 10), (20, 30), True, False),
    ((36, 196, 64), (36, 64, 64), False, False),  # Winograd's taps
    ((512, 4608), (4608, 49), False, False),  # M split
]


def _operands(seed: int, ash: tuple[int, ...], bsh: tuple[int, ...], ta: bool,
              tb: bool) -> tuple[np.ndarray, np.ndarray]:
    """Random float32 operands of these stored shapes, as transposed views where asked."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(ash).astype(np.float32)
    b = rng.standard_normal(bsh).astype(np.float32)
    return (np.swapaxes(a, -1, -2) if ta else a), (np.swapaxes(b, -1, -2) if tb else b)


@pytest.mark.parametrize("ash,bsh,ta,tb", CASES)
@pytest.mark.parametrize("nthreads", [1, 2])
def test_matches_numpy(ash: tuple[int, ...], bsh: tuple[int, ...], ta: bool, tb: bool,
                       nthreads: int) -> None:
    a, b = _operands(len(ash) * 7 + bsh[-1], ash, bsh, ta, tb)
    want = np.matmul(a, b)
    got = np.full_like(want, np.nan)
    gemm = pool.Gemm(a.shape, b.shape, nthreads)
    assert gemm.ok
    gemm(a, b, got)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_it_is_the_pool_that_computes(monkeypatch: pytest.MonkeyPatch) -> None:
    """np.matmul is not called for a layout cblas takes as it is, and is for one it cannot
    (a batch whose axes do not collapse into one stride)."""
    calls: list[int] = []
    real = np.matmul
    monkeypatch.setattr(pool.np, "matmul", lambda *a, **k: calls.append(1) or real(*a, **k))
    a = np.ones((4, 32, 16), np.float32)
    b = np.ones((4, 16, 8), np.float32)
    out = np.empty((4, 32, 8), np.float32)
    pool.Gemm(a.shape, b.shape, 2)(a, b, out)
    assert calls == [] and np.all(out == 16)
    strided = np.ones((4, 2, 32, 16), np.float32)[:, 0]  # batch stride skips every other plane
    pool.Gemm(strided.shape, b.shape, 2)(strided, b, out)
    assert np.all(out == 16)
    odd = np.ones((4, 32, 32), np.float32)[:, :, ::2]  # inner stride 2: not a BLAS layout
    pool.Gemm(odd.shape, b.shape, 2)(odd, b, out)
    assert calls == [1] and np.all(out == 16)


def test_float64_and_empty_fall_back() -> None:
    a = np.ones((3, 4))
    b = np.ones((4, 5))
    out = np.empty((3, 5))
    pool.Gemm(a.shape, b.shape, 2)(a, b, out)
    assert np.all(out == 4)
    assert not pool.Gemm((0, 4), (4, 5), 2).ok


def test_policy_one_pool() -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    budget = threads.configure(2)
    try:
        if not threads.POOL:
            pytest.skip("numba's threading layer is not thread-safe here")
        assert budget == 2 and numba.get_num_threads() == 2
        blas = [p["num_threads"] for p in threadpoolctl.threadpool_info()
                if p.get("user_api") == "blas"]
        assert blas and max(blas) == 1  # no spinning BLAS workers beside numba's pool
        threads.limit(1)
        assert numba.get_num_threads() == 1
        threads.limit(8)  # never above the budget
        assert numba.get_num_threads() == 2
        seen: list[int] = []

        def other_thread() -> None:
            threads.limit(1)
            seen.append(numba.get_num_threads())

        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
        assert seen == [1] and numba.get_num_threads() == 2  # per Python thread
    finally:
        threads.configure(None)


VECTOR_CASES = [
    ((1, 2048), (2048, 1000), False, False),
    ((1, 2048), (1000, 2048), False, True),  # a Gemm with transB: W [N, K]
    ((1, 9216), (4096, 9216), False, True),  # AlexNet's fc6
    ((1000, 2048), (2048, 1), False, False),
    ((2048, 1000), (2048, 1), True, False),
    ((4, 1, 64), (4, 64, 128), False, False),
    ((4, 128, 64), (4, 64, 1), False, False),
    ((1, 511), (300, 511), False, True),
]


@pytest.mark.parametrize("ash,bsh,ta,tb", VECTOR_CASES)
def test_matrix_vector_products_are_numpys_bit_for_bit(ash: tuple[int, ...],
                                                       bsh: tuple[int, ...], ta: bool,
                                                       tb: bool) -> None:
    """The reference backend is np.matmul, which calls sgemv here; so does the pool, split
    only where that changes no bit (light ResNet-50's near-equal ~1e19 logits turn a last-bit
    difference into a different softmax)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    a, b = _operands(bsh[-1], ash, bsh, ta, tb)
    with threadpoolctl.threadpool_limits(1, "blas"):
        want = np.matmul(a, b)
        got = np.full_like(want, np.nan)
        pool.Gemm(a.shape, b.shape, 2)(a, b, got)
    np.testing.assert_array_equal(got, want)


def _conv_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int, group: int,
                    res: np.ndarray | None, act: str) -> np.ndarray:
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1
    y = np.zeros((n, m, oh, ow), np.float64)
    mg = m // group
    for k in range(group):
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, k * cg:(k + 1) * cg, i:i + oh, j:j + ow].astype(np.float64)
                taps = w[k * mg:(k + 1) * mg, :, i, j]
                y[:, k * mg:(k + 1) * mg] += np.einsum("mc,nchw->nmhw", taps, patch)
    y += b.reshape(1, m, 1, 1)
    if res is not None:
        y += res
    if act == "relu":
        y = np.maximum(y, 0)
    elif act == "clip":
        y = np.clip(y, 0, 6)
    return y.astype(np.float32)


@pytest.mark.parametrize("variant,k,group,batch", [("pointwise", 1, 1, 1), ("pointwise", 1, 2, 2),
                                                   ("im2col", 3, 1, 1), ("im2col", 3, 2, 2),
                                                   ("im2col_tiles", 3, 1, 1),
                                                   ("im2col_tiles", 3, 2, 2),
                                                   ("pointwise_mk", 1, 2, 2),
                                                   ("im2col_mk", 3, 2, 2)])
@pytest.mark.parametrize("act,residual", [("relu", False), ("clip", True), ("", True)])
def test_conv_bias_residual_activation_fused_into_the_gemm_blocks(
        variant: str, k: int, group: int, batch: int, act: str, residual: bool) -> None:
    """Large enough for the pool's sgemm path: the epilogue runs per block inside the GEMM
    call (no second pass) and gives the same as bias, residual and activation after it."""
    from walle_backend_numba import conv

    from walle_core.ir.dtypes import from_numpy
    from walle_core.ir.primitives import TensorSpec

    threads.configure(2)
    try:
        if not threads.POOL:
            pytest.skip("numba's threading layer is not thread-safe here")
        rng = np.random.default_rng(k * 10 + group)
        c, m, hw, pad = 64, 96, 24, k // 2
        x = rng.standard_normal((batch, c, hw, hw)).astype(np.float32)
        w = (rng.standard_normal((m, c // group, k, k)) * 0.1).astype(np.float32)
        b = rng.standard_normal(m).astype(np.float32)
        res = rng.standard_normal((batch, m, hw, hw)).astype(np.float32) if residual else None
        attrs: dict[str, Any] = {"pads": [pad] * 4, "group": group}
        if act:
            attrs["fused_activation"] = act
            attrs["fused_act_params"] = (0.0, 6.0) if act == "clip" else ()
        f32 = from_numpy(np.dtype(np.float32))
        y_spec = TensorSpec((batch, m, hw, hw), f32)
        run = conv.plan(attrs, TensorSpec(x.shape, f32), TensorSpec(w.shape, f32),
                        TensorSpec(b.shape, f32), y_spec, variant)
        assert run is not None
        y = np.full(y_spec.shape, np.nan, np.float32)
        run(x, w, b, y, res)
        np.testing.assert_allclose(y, _conv_reference(x, w, b, pad, group, res, act),
                                   rtol=1e-4, atol=1e-4)
    finally:
        threads.configure(None)


@pytest.mark.parametrize("xs,ws,attrs", [
    ((1, 3, 61, 58), (16, 3, 7, 7), {"strides": [2, 2], "pads": [3, 2, 1, 3]}),
    ((2, 8, 37, 29), (12, 4, 3, 5), {"group": 2, "pads": [1, 2, 1, 2], "dilations": [2, 1]}),
    ((1, 96, 20, 20), (64, 96, 3, 3), {"pads": [1, 1, 1, 1]}),  # tiles of several rows
])
def test_tiled_im2col_matches_im2col(xs: tuple[int, ...], ws: tuple[int, ...],
                                     attrs: dict[str, Any]) -> None:
    """Tiles of output rows (each task's own column slice) give what the whole-image im2col
    gives, for strides, asymmetric pads, groups, dilation and batch."""
    from walle_backend_numba import conv

    from walle_core.ir.dtypes import from_numpy
    from walle_core.ir.primitives import TensorSpec

    threads.configure(2)
    try:
        if not threads.POOL:
            pytest.skip("numba's threading layer is not thread-safe here")
        rng = np.random.default_rng(xs[1])
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        b = rng.standard_normal(ws[0]).astype(np.float32)
        f32 = from_numpy(np.dtype(np.float32))
        ys = None
        for variant in ("im2col", "im2col_tiles", "im2col_mk"):
            if ys is None:
                oh = (xs[2] + attrs["pads"][0] + attrs["pads"][2]
                      - attrs.get("dilations", [1, 1])[0] * (ws[2] - 1) - 1) \
                    // attrs.get("strides", [1, 1])[0] + 1
                ow = (xs[3] + attrs["pads"][1] + attrs["pads"][3]
                      - attrs.get("dilations", [1, 1])[1] * (ws[3] - 1) - 1) \
                    // attrs.get("strides", [1, 1])[1] + 1
                ys = (xs[0], ws[0], oh, ow)
            run = conv.plan({**attrs, "fused_activation": "relu"}, TensorSpec(xs, f32),
                            TensorSpec(ws, f32), TensorSpec(b.shape, f32), TensorSpec(ys, f32),
                            variant)
            assert run is not None, variant
            y = np.full(ys, np.nan, np.float32)
            run(x, w, b, y, None)
            if variant == "im2col":
                want = y
            else:
                np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    finally:
        threads.configure(None)
