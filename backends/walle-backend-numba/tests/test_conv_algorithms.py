"""Every Conv algorithm the backend offers the search matches the reference, and its costs
rank the variants the way they measure."""

from __future__ import annotations

import gc
from functools import partial
from typing import Any

import numpy as np
import pytest
from walle_backend_numba.checking import ENGINE, spec

pytestmark = pytest.mark.skipif(not ENGINE, reason="the tensor engine is not in this core")
RNG = np.random.default_rng(3)

# x shape, w shape, attrs (odd sizes, asymmetric padding, strides, groups, dilation)
SHAPES = [
    ((1, 5, 7, 9), (6, 5, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((2, 3, 10, 11), (4, 3, 3, 3), {"pads": [0, 1, 2, 0]}),
    ((1, 8, 13, 6), (7, 8, 3, 3), {"pads": [1, 1, 1, 1]}),
    ((1, 4, 5, 5), (3, 4, 3, 3), {}),
    ((1, 6, 9, 9), (6, 3, 3, 3), {"group": 2, "strides": [2, 1], "pads": [1, 0, 1, 0]}),
    ((2, 6, 11, 7), (6, 1, 3, 3), {"group": 6, "pads": [1, 1, 1, 1], "strides": [2, 2]}),
    ((1, 5, 8, 8), (5, 1, 5, 5), {"group": 5, "pads": [2, 2, 2, 2], "dilations": [2, 1]}),
    ((1, 4, 12, 9), (4, 1, 3, 3), {"group": 4, "strides": [2, 1], "pads": [0, 1, 2, 0]}),
    ((2, 6, 5, 7), (6, 1, 1, 1), {"group": 6}),  # per-channel scale+shift (standalone BN)
    ((2, 3, 13, 14), (3, 1, 5, 5), {"group": 3, "strides": [3, 2], "pads": [2, 1, 1, 2]}),
    ((1, 16, 6, 5), (24, 16, 1, 1), {}),
    ((2, 12, 9, 10), (9, 4, 1, 1), {"group": 3}),  # grouped 1x1 (ShuffleNet): one launch
    ((1, 240, 14, 14), (240, 80, 1, 1), {"group": 3}),  # ... large enough to run parallel
    ((1, 4, 8, 8), (6, 4, 3, 3), {"dilations": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 3, 17, 16), (8, 3, 3, 3), {"strides": [2, 2], "pads": [1, 0, 1, 1]}),  # an RGB stem
    ((2, 2, 11, 13), (5, 2, 3, 3), {"strides": [2, 1], "pads": [1, 1, 0, 2]}),
    # stems (<= 4 input channels: direct_mk too), stride 2 and 3, 7x7, an output row
    # wider than one 48-pixel tile
    ((1, 3, 23, 101), (20, 3, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((2, 3, 19, 21), (9, 3, 7, 7), {"strides": [2, 2], "pads": [3, 3, 3, 3]}),
    ((1, 4, 13, 14), (17, 4, 3, 3), {"strides": [3, 3], "pads": [0, 1, 2, 0]}),
]


def _out_shape(xs: tuple[int, ...], ws: tuple[int, ...], attrs: dict[str, Any]) -> tuple[int, ...]:
    from walle_backend_numba.conv import pads_2d

    s = attrs.get("strides", [1, 1])
    d = attrs.get("dilations", [1, 1])
    pads = attrs.get("pads", [0, 0, 0, 0])
    if "auto_pad" in attrs:
        return (xs[0], ws[0], -(-xs[2] // s[0]), -(-xs[3] // s[1]))
    assert pads_2d(attrs, xs[2:], ws[2:], s, d) is not None  # type: ignore[arg-type]
    oh = (xs[2] + pads[0] + pads[2] - d[0] * (ws[2] - 1) - 1) // s[0] + 1
    ow = (xs[3] + pads[1] + pads[3] - d[1] * (ws[3] - 1) - 1) // s[1] + 1
    return (xs[0], ws[0], oh, ow)


def _run(backend: Any, prim: Any, ins: list[np.ndarray], out_shape: tuple[int, ...],
         algorithm: Any = None, const: bool = True) -> np.ndarray:
    from walle_core.ir.dtypes import from_numpy
    from walle_core.ir.primitives import Step, TensorSpec

    out_spec = TensorSpec(out_shape, from_numpy(ins[0].dtype))
    step = Step(prim, list(range(len(ins))), [len(ins)], "test")
    fn = backend.compile(step, [spec(a) for a in ins], [out_spec], algorithm)
    # whatever the plan made and did not keep is freed now and its memory reused, with
    # values no offset or input can be: a runner passing the address of an array it does not
    # hold reads these (or crashes) instead
    gc.collect()
    churn = [np.full(n, 1 << 40, np.int64) for n in range(8, 2048, 8) for _ in range(2)]
    out = np.full(out_shape, 7, ins[0].dtype)
    bufs = [backend.constant(a) if const else a.copy() for a in ins]
    fn(bufs, [out])
    # bound to these buffers (as the executor runs it): the same result, run after run
    bound_out = np.full(out_shape, 7, ins[0].dtype)
    call = fn.bind(bufs, [bound_out]) if hasattr(fn, "bind") else partial(fn, bufs, [bound_out])
    call()
    np.testing.assert_array_equal(bound_out, out)
    if not const:  # weights computed at run time: changing them must change the result
        bufs[1] *= 2
        fn(bufs, [out])
        call()
        np.testing.assert_array_equal(bound_out, out)
    del churn
    return out


@pytest.mark.parametrize("xs,ws,attrs", SHAPES)
@pytest.mark.parametrize("with_bias", [False, True])
def test_every_variant_matches_reference(xs: tuple[int, ...], ws: tuple[int, ...],
                                         attrs: dict[str, Any], with_bias: bool) -> None:
    from walle_backend_numba import NumbaBackend

    from walle_core.backend import Algorithm
    from walle_core.ir.primitives import Kernel, Step
    from walle_core.reference_backend import ReferenceBackend
    from walle_core.search.profile import CostProfile

    x, w = RNG.standard_normal(xs).astype(np.float32), RNG.standard_normal(ws).astype(np.float32)
    ins = [x, w] + ([RNG.standard_normal(ws[0]).astype(np.float32)] if with_bias else [])
    prim = Kernel("Conv", "", dict(attrs, kernel_shape=list(ws[2:])), 17)
    out = _out_shape(xs, ws, attrs)
    numba_backend = NumbaBackend(threads=2)
    want = _run(ReferenceBackend(), prim, ins, out)
    want2 = _run(ReferenceBackend(), prim, [x, w * 2, *ins[2:]], out)
    step = Step(prim, list(range(len(ins))), [len(ins)], "test")
    offered = numba_backend.algorithms(step, [spec(a) for a in ins],
                                       [spec(np.empty(out, np.float32))], CostProfile("numba", "k"))
    names = [a.name for a in offered]
    assert names and all(a.cost > 0 for a in offered)
    if ws[2:] == (3, 3) and attrs.get("group", 1) == 1 and "strides" not in attrs \
            and "dilations" not in attrs:
        assert {"im2col", "winograd2", "winograd4"} <= set(names)
    if xs[1] <= 4 and attrs.get("group", 1) == 1 and "dilations" not in attrs:
        assert "direct_mk" in names  # a stem: the implicit GEMM is offered
    for name in names:
        tol = 1e-3 if name == "winograd4" else 1e-4
        got = _run(numba_backend, prim, ins, out, Algorithm(name, 0.0))
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=name)
        got = _run(numba_backend, prim, ins, out, Algorithm(name, 0.0), const=False)
        np.testing.assert_allclose(got, want2, rtol=tol, atol=2 * tol, err_msg=name)


def test_float16_conv_computes_in_float32() -> None:
    from walle_backend_numba import NumbaBackend

    from walle_core.ir.primitives import Kernel

    x = RNG.random((2, 4, 11)).astype(np.float16)[..., None]
    w = RNG.random((4, 1, 4, 1)).astype(np.float16)
    prim = Kernel("Conv", "", {"group": 4, "kernel_shape": [4, 1]}, 17)
    got = _run(NumbaBackend(threads=2), prim, [x, w], (2, 4, 8, 1))
    exact = sum(x[:, :, i:i + 8].astype(np.float64) * w[None, :, 0, i, 0, None, None]
                for i in range(4))
    np.testing.assert_array_equal(got, exact.astype(np.float16))


def test_unknown_algorithm_is_refused() -> None:
    from walle_backend_numba import NumbaBackend

    from walle_core.backend import Algorithm
    from walle_core.ir.primitives import Kernel

    x, w = np.ones((1, 2, 5, 5), np.float32), np.ones((2, 2, 1, 1), np.float32)
    prim = Kernel("Conv", "", {"kernel_shape": [1, 1]}, 17)
    with pytest.raises(ValueError, match="winograd2"):
        _run(NumbaBackend(threads=2), prim, [x, w], (1, 2, 5, 5), Algorithm("winograd2", 0.0))


def test_costs_rank_3x3_variants_like_measurements() -> None:
    """Loose: with a calibrated profile, the variant the costs call cheapest is never much
    slower than the one that measures fastest."""
    from walle_backend_numba import NumbaBackend

    from walle_core.backend import Algorithm
    from walle_core.ir.dtypes import from_numpy
    from walle_core.ir.primitives import Kernel, Step, TensorSpec
    from walle_core.search.profile import _Bench, calibrate

    backend = NumbaBackend(threads=1)
    profile = calibrate(backend)
    assert {"conv.conv3x3.im2col", "conv.conv3x3.winograd2"} <= set(profile.extra)
    f32 = from_numpy(np.float32)
    prim = Kernel("Conv", "", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, 13)
    ins: list[TensorSpec | None] = [TensorSpec((1, 48, 20, 20), f32),
                                    TensorSpec((48, 48, 3, 3), f32), None]
    outs = [TensorSpec((1, 48, 20, 20), f32)]
    offered = backend.algorithms(Step(prim, [0, 1, -1], [3]), ins, outs, profile)
    assert len(offered) > 1
    bench = _Bench(backend)
    measured = {a.name: min(bench.time(prim, ins, outs, Algorithm(a.name, 0.0))
                            for _ in range(3)) for a in offered}
    cheapest = min(offered, key=lambda a: a.cost).name
    assert measured[cheapest] <= 2.5 * min(measured.values()), (offered, measured)


def test_gemm_variant_efficiency_follows_the_layer_size() -> None:
    """A GEMM variant timed at a small and a large shape has its efficiency interpolated in
    log(multiply-adds) between them, clamped outside; one timed once keeps that figure."""
    from walle_backend_numba import conv

    from walle_core.search.profile import CostProfile

    profile = CostProfile("numba", "k", launch_s=1e-6, ew_bytes_s=20e9, copy_bytes_s=10e9,
                          gemm_small_flops_s=50e9, gemm_flops_s=200e9)
    small = conv.calibration_geom((1, 32, 28, 28), (64, 32, 1, 1), 0)
    big = conv.calibration_geom((1, 1024, 14, 14), (256, 1024, 1, 1), 0)
    middle = conv.calibration_geom((1, 128, 28, 28), (128, 128, 1, 1), 0)
    huge = conv.calibration_geom((1, 2048, 28, 28), (512, 2048, 1, 1), 0)
    profile.extra = {
        "conv.pw.pointwise": 0.5 * conv.analytic_seconds(small, "pointwise", profile),
        "conv.pw_big.pointwise": 2.0 * conv.analytic_seconds(big, "pointwise", profile),
        "conv.pw.pointwise_mk": 0.8 * conv.analytic_seconds(small, "pointwise_mk", profile)}
    eff = [conv.efficiency("pointwise", profile, g) for g in (small, middle, big, huge)]
    assert eff[0] == pytest.approx(0.5) and eff[2] == pytest.approx(2.0)
    assert 0.5 < eff[1] < 2.0 and eff[3] == pytest.approx(2.0)
    assert conv.efficiency("pointwise_mk", profile, big) == pytest.approx(0.8)
    assert conv.efficiency("im2col_tiles", profile, big) == 1.0  # not timed


def test_tiled_blas_estimate_counts_the_weights_packed_per_tile() -> None:
    """``im2col_tiles`` calls sgemm once per tile, and OpenBLAS packs the weights on every
    call: with 9.4 MB of weights in 3 tiles (ResNet's 512x512x3x3 at 7x7) that copy is most of
    its time. The estimate counts it, so an unmeasured layer is not placed on the variant that
    measures slowest; with weights a few KB it adds next to nothing."""
    from walle_backend_numba import conv

    from walle_core.search.profile import CostProfile

    profile = CostProfile("numba", "k", launch_s=1e-6, ew_bytes_s=60e9, copy_bytes_s=28e9,
                          gemm_small_flops_s=90e9, gemm_flops_s=340e9)
    big = conv.calibration_geom((1, 512, 7, 7), (512, 512, 3, 3), 1)
    tiles = conv.analytic_seconds(big, "im2col_tiles", profile)
    assert tiles > 1.5 * conv.analytic_seconds(big, "im2col_mk", profile)
    weights = 512 * 4608 * 4
    assert tiles > 3 * weights * 2 / 28e9  # three tiles, each packing every weight
    small = conv.calibration_geom((1, 32, 28, 28), (32, 32, 3, 3), 1)
    free_copies = CostProfile(**{**profile.__dict__, "copy_bytes_s": 1e18})
    assert conv.analytic_seconds(small, "im2col_tiles", profile) < \
        1.1 * conv.analytic_seconds(small, "im2col_tiles", free_copies)
    assert tiles > 2 * conv.analytic_seconds(big, "im2col_tiles", free_copies)


@pytest.mark.parametrize("act,params", [("relu", ()), ("clip", (-0.5, 0.75))])
@pytest.mark.parametrize("with_bias", [False, True])
def test_every_variant_applies_a_fused_activation(act: str, params: tuple[float, ...],
                                                  with_bias: bool) -> None:
    """The activation the core fuses into a Conv step is applied by every variant (Winograd
    applies it inside its output transform, the others in the bias epilogue)."""
    from walle_backend_numba import NumbaBackend

    from walle_core.backend import Algorithm
    from walle_core.ir.primitives import Kernel, Step
    from walle_core.reference_backend import ReferenceBackend
    from walle_core.search.profile import CostProfile

    xs, ws = (1, 6, 9, 10), (5, 6, 3, 3)
    x, w = RNG.standard_normal(xs).astype(np.float32), RNG.standard_normal(ws).astype(np.float32)
    ins = [x, w] + ([RNG.standard_normal(5).astype(np.float32)] if with_bias else [])
    plain = Kernel("Conv", "", {"pads": [1, 1, 1, 1], "kernel_shape": [3, 3]}, 17)
    out = (1, 5, 9, 10)
    pre = _run(ReferenceBackend(), plain, ins, out)
    want = np.maximum(pre, 0) if act == "relu" else np.clip(pre, *params)
    fused = Kernel("Conv", "", dict(plain.attrs, fused_activation=act,  # type: ignore[attr-defined]
                                    fused_act_params=list(params)), 17)
    backend = NumbaBackend(threads=2)
    step = Step(fused, list(range(len(ins))), [len(ins)], "test")
    offered = backend.algorithms(step, [spec(a) for a in ins], [spec(pre)],
                                 CostProfile("numba", "k"))
    assert {"im2col", "winograd2", "winograd4"} <= {a.name for a in offered}
    for alg in offered:
        got = _run(backend, fused, ins, out, Algorithm(alg.name, 0.0))
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3, err_msg=alg.name)


@pytest.mark.parametrize("act", ["", "relu"])
def test_every_variant_adds_a_fused_residual(act: str) -> None:
    """A residual fused into the Conv step (``attrs["fused_add"]``, last input) is added
    before the activation by every variant, and by the reference kernel."""
    from walle_backend_numba import NumbaBackend

    from walle_core.backend import Algorithm
    from walle_core.ir.primitives import Kernel, Step
    from walle_core.reference_backend import ReferenceBackend
    from walle_core.search.profile import CostProfile

    for xs, ws, attrs in [((1, 6, 9, 10), (5, 6, 3, 3), {"pads": [1, 1, 1, 1]}),
                          ((1, 6, 9, 10), (6, 1, 3, 3), {"pads": [1, 1, 1, 1], "group": 6}),
                          ((1, 6, 9, 10), (5, 6, 1, 1), {}),
                          ((1, 6, 9, 10), (6, 2, 1, 1), {"group": 3}),  # grouped 1x1
                          ((1, 3, 9, 10), (5, 3, 3, 3), {"pads": [1, 1, 1, 1]})]:  # a stem
        x = RNG.standard_normal(xs).astype(np.float32)
        w = RNG.standard_normal(ws).astype(np.float32)
        b = RNG.standard_normal(ws[0]).astype(np.float32)
        out = (1, ws[0], 9, 10)
        r = RNG.standard_normal(out).astype(np.float32)
        plain = Kernel("Conv", "", dict(attrs, kernel_shape=list(ws[2:])), 17)
        pre = _run(ReferenceBackend(), plain, [x, w, b], out) + r
        want = np.maximum(pre, 0) if act else pre
        fused_attrs = dict(plain.attrs, fused_add=True)  # type: ignore[attr-defined]
        if act:
            fused_attrs["fused_activation"] = act
        fused = Kernel("Conv", "", fused_attrs, 17)
        np.testing.assert_allclose(_run(ReferenceBackend(), fused, [x, w, b, r], out), want,
                                   rtol=1e-4, atol=1e-4)
        backend = NumbaBackend(threads=2)
        step = Step(fused, [0, 1, 2, 3], [4], "test")
        offered = backend.algorithms(step, [spec(x), spec(w), spec(b), spec(r)], [spec(r)],
                                     CostProfile("numba", "k"))
        assert offered
        for alg in offered:
            got = _run(backend, fused, [x, w, b, r], out, Algorithm(alg.name, 0.0))
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3,
                                       err_msg=f"{alg.name} {ws}")


@pytest.mark.parametrize("act,params", [("", ()), ("relu", ()), ("clip", (-0.5, 0.75)),
                                        ("sigmoid", ()), ("tanh", ())])
@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_applies_every_fused_activation(act: str, params: tuple[float, ...],
                                                  stride: int) -> None:
    """The depthwise kernel's row pass (stride 1) and flat pass (stride 2) apply each fused
    activation the core can hand it."""
    from walle_backend_numba import NumbaBackend

    from walle_core.backend import Algorithm
    from walle_core.ir.primitives import Kernel
    from walle_core.reference_backend import ReferenceBackend

    xs, ws = (1, 8, 23, 21), (8, 1, 3, 3)
    x, w = RNG.standard_normal(xs).astype(np.float32), RNG.standard_normal(ws).astype(np.float32)
    b = RNG.standard_normal(8).astype(np.float32)
    attrs = {"pads": [1, 1, 1, 1], "kernel_shape": [3, 3], "group": 8,
             "strides": [stride, stride]}
    out = _out_shape(xs, ws, attrs)
    pre = _run(ReferenceBackend(), Kernel("Conv", "", attrs, 17), [x, w, b], out)
    want = {"": pre, "relu": np.maximum(pre, 0), "clip": np.clip(pre, *params) if params else pre,
            "sigmoid": 1 / (1 + np.exp(-pre)), "tanh": np.tanh(pre)}[act]
    fused = Kernel("Conv", "", dict(attrs, fused_activation=act, fused_act_params=list(params)),
                   17)
    got = _run(NumbaBackend(threads=2), fused, [x, w, b], out, Algorithm("depthwise", 0.0))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ["winograd2", "winograd4"])
@pytest.mark.parametrize("act", ["", "relu", "clip", "sigmoid"])
@pytest.mark.parametrize("with_res", [False, True])
def test_winograd_epilogues_through_the_transposing_store(variant: str, act: str,
                                                          with_res: bool) -> None:
    """Channel and width counts that span several register-transpose tiles with ragged edges
    (transpose.py), bias, residual and every fused activation, against a float64 direct
    convolution."""
    from walle_backend_numba import conv, threads

    from walle_core.ir import dtypes
    from walle_core.ir.primitives import TensorSpec

    threads.configure(2)
    f32 = dtypes.from_numpy(np.float32)
    x = RNG.standard_normal((2, 20, 18, 37)).astype(np.float32)
    w = RNG.standard_normal((33, 20, 3, 3)).astype(np.float32) * 0.2
    b = RNG.standard_normal(33).astype(np.float32)
    r = RNG.standard_normal((2, 33, 18, 37)).astype(np.float32)
    attrs: dict[str, Any] = {"pads": [1, 1, 1, 1], "fused_activation": act}
    if act == "clip":
        attrs["fused_act_params"] = (-0.5, 0.7)
    run = conv.plan(attrs, TensorSpec(x.shape, f32), TensorSpec(w.shape, f32),
                    TensorSpec(b.shape, f32), TensorSpec(r.shape, f32), variant)
    assert run is not None
    y = np.full(r.shape, 7, np.float32)
    run(x, w, b, y, r if with_res else None)  # type: ignore[call-arg]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.zeros(r.shape)
    for i in range(3):
        for j in range(3):
            want += np.einsum("nchw,mc->nmhw", xp[:, :, i:i + 18, j:j + 37], w[:, :, i, j])
    want += b[None, :, None, None]
    if with_res:
        want += r
    want = {"": want, "relu": np.maximum(want, 0), "clip": np.clip(want, -0.5, 0.7),
            "sigmoid": 1 / (1 + np.exp(-want))}[act]
    tol = 1e-3 if variant == "winograd4" else 1e-4
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol)


def test_tiles_of_output_rows_balance_the_threads() -> None:
    """im2col_mk's tiles of output rows give the pool's threads even shares: 28 rows in tiles
    of 8 left one core 16 rows and the other 12; tiles of 7 give both 14. One thread keeps
    the largest tile; the choice never gives the busiest thread more than the largest tile
    would have."""
    from walle_backend_numba.conv import balanced_rows

    assert balanced_rows(28, 28, 8, 2) == 7
    assert balanced_rows(28, 28, 8, 1) == 8
    assert balanced_rows(7, 7, 4, 2) == 4  # 4 + 3: no better split of 7 rows in two

    def busiest(oh: int, r: int, threads: int) -> int:
        sizes = [min(r, oh - p) for p in range(0, oh, r)]
        n = len(sizes)
        return max(sum(sizes[t * n // threads:(t + 1) * n // threads]) for t in range(threads))

    for oh in range(1, 60):
        for most in range(1, min(oh, 9) + 1):
            r = balanced_rows(oh, oh, most, 2)
            assert max(1, most // 2) <= r <= most
            assert busiest(oh, r, 2) <= busiest(oh, most, 2) + r
