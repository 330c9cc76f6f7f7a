"""Channels-last Conv kernels (nhwc.py) against the reference numpy Conv on NCHW."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from walle_backend_numba import nhwc

from walle_core.ir.dtypes import from_numpy
from walle_core.ir.primitives import TensorSpec
from walle_core.reference_ops import get_kernel

F32 = from_numpy(np.float32)
RNG = np.random.default_rng(3)

CASES = [  # n, h, w, c, m, k, stride, pad, group, activation, residual, bias, variant
    (1, 9, 9, 32, 32, 3, 1, 1, 32, "", False, True, "nhwc_depthwise"),
    (2, 9, 7, 32, 32, 3, 2, 1, 32, "clip", True, True, "nhwc_depthwise"),
    (1, 8, 8, 16, 16, 5, 1, 2, 16, "relu", False, True, "nhwc_depthwise"),
    (1, 7, 7, 40, 40, 3, 1, 1, 40, "sigmoid", True, False, "nhwc_depthwise"),
    (1, 12, 12, 24, 40, 1, 1, 0, 1, "clip", True, True, "nhwc_pointwise"),
    (2, 12, 12, 24, 40, 1, 1, 0, 1, "", False, False, "nhwc_pointwise"),
    (1, 5, 5, 24, 70, 1, 1, 0, 1, "tanh", False, True, "nhwc_pointwise"),
    (1, 12, 12, 24, 40, 1, 1, 0, 1, "relu", True, True, "nhwc_im2col"),
    (1, 14, 14, 64, 128, 1, 2, 0, 1, "", False, True, "nhwc_im2col"),
    (1, 13, 11, 3, 32, 3, 2, 1, 1, "clip", False, True, "nhwc_im2col"),
    (2, 15, 15, 20, 70, 3, 1, 1, 1, "relu", True, True, "nhwc_im2col"),
    (2, 15, 15, 20, 70, 3, 1, 1, 1, "relu", True, True, "nhwc_direct"),
    (1, 14, 14, 64, 128, 1, 2, 0, 1, "clip", False, True, "nhwc_direct"),
    (1, 7, 7, 64, 200, 3, 1, 1, 1, "", True, False, "nhwc_direct"),  # split by panels
    # weights of PACK_BYTES or more, packed in 48-column panels (the last one partial)
    (1, 7, 7, 256, 264, 1, 1, 0, 1, "clip", True, True, "nhwc_packed"),
    (2, 5, 5, 320, 208, 1, 1, 0, 1, "relu", False, False, "nhwc_packed"),
]


def _reference(x, w, b, attrs, act, residual):  # type: ignore[no-untyped-def]
    conv = get_kernel("Conv", "")
    y = conv([x, w, b] if b is not None else [x, w], attrs, 13)[0]
    if residual is not None:
        y = y + residual
    return {"": y, "relu": np.maximum(y, 0), "clip": np.clip(y, 0, 6),
            "sigmoid": 1 / (1 + np.exp(-y)), "tanh": np.tanh(y)}[act]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[-1]}-k{c[5]}s{c[6]}g{c[8]}-{c[9]}")
def test_nhwc_conv_matches_reference(case: tuple) -> None:
    n, h, w, c, m, k, s, p, g, act, has_res, has_bias, variant = case
    x = RNG.standard_normal((n, c, h, w)).astype(np.float32)
    wt = (RNG.standard_normal((m, c // g, k, k)) * 0.3).astype(np.float32)
    b = RNG.standard_normal(m).astype(np.float32) if has_bias else None
    attrs = {"kernel_shape": [k, k], "pads": [p] * 4, "strides": [s, s], "group": g}
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    res = RNG.standard_normal((n, m, oh, ow)).astype(np.float32) if has_res else None
    want = _reference(x, wt, b, attrs, act, res)
    nattrs = dict(attrs, layout="NHWC", fused_activation=act)
    if act == "clip":
        nattrs["fused_act_params"] = (0.0, 6.0)
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    wh = np.ascontiguousarray(wt.transpose(2, 3, 1, 0))
    yh = np.full((n, oh, ow, m), np.nan, np.float32)
    geo = nhwc.geometry(nattrs, TensorSpec(xh.shape, F32), TensorSpec(wh.shape, F32), None,
                        TensorSpec(yh.shape, F32))
    assert geo is not None and variant in geo.variants()
    run = nhwc.plan(nattrs, TensorSpec(xh.shape, F32), TensorSpec(wh.shape, F32),
                    None if b is None else TensorSpec(b.shape, F32), TensorSpec(yh.shape, F32),
                    variant)
    assert run is not None
    rh = None if res is None else np.ascontiguousarray(res.transpose(0, 2, 3, 1))
    run(xh, wh, b, yh, rh)
    np.testing.assert_allclose(yh.transpose(0, 3, 1, 2), want, rtol=2e-4, atol=2e-4)


def test_geometry_declines_what_it_does_not_cover() -> None:
    def geo(attrs: dict, x: tuple, w: tuple, y: tuple):  # type: ignore[no-untyped-def]
        return nhwc.geometry(attrs, TensorSpec(x, F32), TensorSpec(w, F32), None,
                             TensorSpec(y, F32))

    base = {"layout": "NHWC", "kernel_shape": [3, 3], "pads": [1] * 4}
    assert geo(base, (1, 8, 8, 4), (3, 3, 4, 4), (1, 8, 8, 4)) is not None
    assert geo({**base, "layout": ""}, (1, 8, 8, 4), (3, 3, 4, 4), (1, 8, 8, 4)) is None
    assert geo({**base, "dilations": [2, 2]}, (1, 8, 8, 4), (3, 3, 4, 4), (1, 8, 8, 4)) is None
    # grouped but not depthwise
    assert geo({**base, "group": 2}, (1, 8, 8, 4), (3, 3, 2, 4), (1, 8, 8, 4)) is None
    depthwise = geo({**base, "group": 4}, (1, 8, 8, 4), (3, 3, 1, 4), (1, 8, 8, 4))
    assert depthwise is not None and depthwise.variants() == ["nhwc_depthwise"]


@pytest.mark.parametrize("case", [(1, 17, 3, 20, 3, 2, 1, "clip", False),
                                  (2, 15, 4, 70, 5, 1, 2, "relu", True),
                                  (1, 12, 3, 48, 7, 2, 3, "", False),
                                  (1, 9, 3, 8, 3, 1, 1, "sigmoid", True)])
def test_direct_stem_reads_nchw_and_writes_nhwc(case: tuple) -> None:
    n, h, c, m, k, s, p, act, has_res = case
    x = RNG.standard_normal((n, c, h, h)).astype(np.float32)
    wt = (RNG.standard_normal((m, c, k, k)) * 0.3).astype(np.float32)
    b = RNG.standard_normal(m).astype(np.float32)
    attrs = {"kernel_shape": [k, k], "pads": [p] * 4, "strides": [s, s], "group": 1}
    oh = (h + 2 * p - k) // s + 1
    res = RNG.standard_normal((n, m, oh, oh)).astype(np.float32) if has_res else None
    want = _reference(x, wt, b, attrs, act, res)
    nattrs = dict(attrs, layout="NHWC", input_layout="NCHW", fused_activation=act)
    if act == "clip":
        nattrs["fused_act_params"] = (0.0, 6.0)
    wh = np.ascontiguousarray(wt.transpose(2, 3, 1, 0))
    yh = np.full((n, oh, oh, m), np.nan, np.float32)
    specs = [TensorSpec(x.shape, F32), TensorSpec(wh.shape, F32), TensorSpec(b.shape, F32),
             TensorSpec(yh.shape, F32)]
    geo = nhwc.geometry(nattrs, specs[0], specs[1], specs[2], specs[3])
    assert geo is not None and geo.variants() == ["nhwc_direct"]
    run = nhwc.plan(nattrs, *specs)
    assert run is not None
    for _ in range(2):  # the padded copy's borders stay zero from run to run
        run(x, wh, b, yh, None if res is None else np.ascontiguousarray(res.transpose(0, 2, 3, 1)))
        np.testing.assert_allclose(yh.transpose(0, 3, 1, 2), want, rtol=2e-4, atol=2e-4)


def test_packed_weights_follow_a_writable_buffer_and_are_declared() -> None:
    c, m = 256, 264
    attrs = {"kernel_shape": [1, 1], "pads": [0] * 4, "strides": [1, 1], "group": 1,
             "layout": "NHWC", "fused_activation": ""}
    x = RNG.standard_normal((1, 7, 7, c)).astype(np.float32)
    wh = RNG.standard_normal((1, 1, c, m)).astype(np.float32)
    y = np.empty((1, 7, 7, m), np.float32)
    specs = [TensorSpec(x.shape, F32), TensorSpec(wh.shape, F32), None, TensorSpec(y.shape, F32)]
    geo = nhwc.geometry(attrs, *specs)
    assert geo is not None and "nhwc_packed" in geo.variants()
    # the copy it keeps is what the search charges: [ceil(M / 48)][C][48] floats
    assert nhwc.held_bytes(geo, "nhwc_packed") == -(-m // 48) * c * 48 * 4
    assert nhwc.held_bytes(geo, "nhwc_pointwise") == 0
    small = nhwc.geometry(attrs, TensorSpec((1, 7, 7, 64), F32), TensorSpec((1, 1, 64, 64), F32),
                          None, TensorSpec((1, 7, 7, 64), F32))
    assert small is not None and "nhwc_packed" not in small.variants()
    run = nhwc.plan(attrs, *specs, "nhwc_packed")
    assert run is not None
    for _ in range(2):  # new values in the same buffer: packed again
        run(x, wh, None, y)
        np.testing.assert_allclose(y.reshape(49, m), x.reshape(49, c) @ wh.reshape(c, m),
                                   rtol=2e-4, atol=2e-4)
        wh[...] = RNG.standard_normal(wh.shape)


@pytest.mark.parametrize("stem", [True, False], ids=["nchw-stem", "nhwc"])
def test_direct_keeps_the_arrays_whose_addresses_it_passes(stem: bool) -> None:
    """The runner passes its padded copy's and offset table's addresses to the kernel: it
    must hold those arrays itself (a plan's locals are gone once it returns)."""
    c, m, h = (3, 32, 20) if stem else (16, 32, 12)
    attrs = {"kernel_shape": [3, 3], "pads": [1] * 4, "strides": [2, 2], "group": 1,
             "layout": "NHWC", "fused_activation": ""}
    if stem:
        attrs["input_layout"] = "NCHW"
    x = RNG.standard_normal((1, c, h, h)).astype(np.float32)
    wt = (RNG.standard_normal((m, c, 3, 3)) * 0.3).astype(np.float32)
    want = _reference(x, wt, None, {k: v for k, v in attrs.items() if k in
                                    ("kernel_shape", "pads", "strides", "group")}, "", None)
    xin = x if stem else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    wh = np.ascontiguousarray(wt.transpose(2, 3, 1, 0))
    oh = want.shape[2]
    y = np.full((1, oh, oh, m), np.nan, np.float32)
    run = nhwc.plan(attrs, TensorSpec(xin.shape, F32), TensorSpec(wh.shape, F32), None,
                    TensorSpec(y.shape, F32), "nhwc_direct")
    assert run is not None
    gc.collect()
    # reuse the freed memory with values no offset or input can be
    churn = [np.full(n, 1 << 40, np.int64) for n in range(8, 2048, 8) for _ in range(4)]
    run(xin, wh, None, y)
    del churn
    np.testing.assert_allclose(y.transpose(0, 3, 1, 2), want, rtol=2e-4, atol=2e-4)
