"""Native pooling, softmax, layer-norm and LRN kernels match the reference numpy kernels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from walle_backend_numba.checking import ENGINE, assert_close, run_both

pytestmark = pytest.mark.skipif(not ENGINE, reason="the tensor engine is not in this core")
RNG = np.random.default_rng(5)


def _kernel(op: str, attrs: dict[str, Any], opset: int = 17) -> Any:
    from walle_core.ir.primitives import Kernel

    return Kernel(op, "", attrs, opset)


def _pool_out(xs: tuple[int, ...], attrs: dict[str, Any]) -> tuple[int, ...]:
    """Output shape through the reference kernel itself (so ceil mode etc. agree)."""
    from walle_core.reference_ops import pool

    x = np.zeros(xs, np.float32)
    return tuple(pool.average_pool([x], attrs, 17)[0].shape)


POOLS = [
    ((1, 3, 9, 9), {"kernel_shape": [3, 3], "strides": [2, 2]}),
    ((2, 4, 8, 7), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((1, 2, 10, 11), {"kernel_shape": [2, 3], "strides": [2, 1], "pads": [0, 1, 1, 0],
                      "ceil_mode": 1}),
    ((1, 2, 7, 7), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ((1, 2, 9, 8), {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 1, 1],
                    "ceil_mode": 1, "count_include_pad": 1}),
    ((1, 3, 8, 8), {"kernel_shape": [2, 2], "dilations": [2, 2]}),
    ((1, 3, 7, 6), {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 3, 7, 6), {"kernel_shape": [2, 2], "strides": [1, 1], "auto_pad": "SAME_LOWER"}),
    # the separable kernel's generic-stride row pass, and a wide window at stride 2
    ((1, 3, 11, 13), {"kernel_shape": [3, 4], "strides": [3, 3], "pads": [1, 2, 0, 1]}),
    ((2, 2, 12, 12), {"kernel_shape": [5, 5], "strides": [2, 2], "pads": [2, 2, 2, 2],
                      "count_include_pad": 1, "ceil_mode": 1}),
    # stride 1, planes large and small
    ((1, 8, 20, 20), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ((1, 8, 20, 21), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ((2, 6, 17, 15), {"kernel_shape": [2, 3], "pads": [0, 1, 1, 0]}),
    ((1, 8, 16, 16), {"kernel_shape": [3, 3]}),
    ((1, 9, 19, 18), {"kernel_shape": [3, 2], "auto_pad": "SAME_UPPER"}),
    # 3x3, stride 1, pad 1 (pool3_same's flat loops), down to one row or column, and -inf
    ((2, 5, 7, 7), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ((1, 3, 1, 6), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ((1, 3, 5, 1), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ((1, 3, 2, 2), {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}),
    ((1, 3, 2, 3), {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1],
                    "count_include_pad": 1}),
]


@pytest.mark.parametrize("xs,attrs", POOLS)
@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pool(xs: tuple[int, ...], attrs: dict[str, Any], op: str, dtype: Any) -> None:
    if op == "MaxPool" and "count_include_pad" in attrs:
        attrs = {k: v for k, v in attrs.items() if k != "count_include_pad"}
    x = RNG.standard_normal(xs).astype(dtype)
    got, want, fast = run_both(_kernel(op, attrs), [x], [_pool_out(xs, attrs)], [dtype])
    assert fast
    assert_close(got[0], want[0])


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("xs", [(1, 5, 7, 7), (2, 3, 1, 1), (2, 4, 9)])
def test_global_pool(op: str, xs: tuple[int, ...]) -> None:
    x = RNG.standard_normal(xs).astype(np.float32)
    got, want, fast = run_both(_kernel(op, {}), [x], [(*xs[:2], *([1] * (len(xs) - 2)))],
                               [np.float32])
    assert fast
    assert_close(got[0], want[0])


def test_max_pool_with_indices_runs_reference() -> None:
    x = RNG.standard_normal((1, 2, 4, 4)).astype(np.float32)
    got, want, fast = run_both(_kernel("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]}),
                               [x], [(1, 2, 2, 2), (1, 2, 2, 2)], [np.float32, np.int64])
    assert not fast
    assert_close(got[1], want[1])


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("xs,axis,opset", [
    ((3, 17), -1, 13), ((2, 5, 7), 1, 13), ((2, 3, 4, 5), 0, 13), ((4, 3, 6), 1, 11),
    ((2, 3, 4), -2, 11), ((1, 1000), 1, 11), ((6,), 0, 13),
])
def test_softmax(op: str, xs: tuple[int, ...], axis: int, opset: int) -> None:
    x = (RNG.standard_normal(xs) * 5).astype(np.float32)
    if x.size > 4:
        x.reshape(-1)[3] = -np.inf  # masked entries must stay exactly 0 (-inf for log)
    got, want, fast = run_both(_kernel(op, {"axis": axis}, opset), [x], [xs], [np.float32])
    assert fast
    assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("xs,axis", [((2, 7, 33), -1), ((3, 4, 5), 1), ((5, 16), 0)])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("outputs", [1, 3])
def test_layer_norm(xs: tuple[int, ...], axis: int, with_bias: bool, outputs: int) -> None:
    x = RNG.standard_normal(xs).astype(np.float32) * 3 + 1
    norm = xs[axis % len(xs):]
    ins = [x, RNG.standard_normal(norm).astype(np.float32)]
    if with_bias:
        ins.append(RNG.standard_normal(norm).astype(np.float32))
    stat = tuple(d if i < axis % len(xs) else 1 for i, d in enumerate(xs))
    shapes = [xs, stat, stat][:outputs]
    got, want, fast = run_both(_kernel("LayerNormalization", {"axis": axis, "epsilon": 1e-3}),
                               ins, shapes, [np.float32] * outputs)
    assert fast
    for g, w in zip(got, want, strict=True):
        assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_native_sets_agree() -> None:
    """The light module's op list (read without importing numba) matches the kernels."""
    import walle_backend_numba
    from walle_backend_numba import nnops

    assert nnops.NATIVE | {"Conv"} == walle_backend_numba.NUMBA_NATIVE


@pytest.mark.parametrize("xs", [(1, 7, 5, 5), (2, 16, 9), (1, 3, 4, 4)])
@pytest.mark.parametrize("size,beta", [(5, 0.75), (3, 0.5), (4, 1.0), (2, 0.6)])
def test_lrn(xs: tuple[int, ...], size: int, beta: float) -> None:
    x = RNG.standard_normal(xs).astype(np.float32) * 3
    attrs = {"size": size, "alpha": 2e-3, "beta": beta, "bias": 1.5}
    got, want, fast = run_both(_kernel("LRN", attrs, 13), [x], [xs], [np.float32])
    assert fast  # the numba kernel ran, not the reference fallback
    assert_close(got[0], want[0])
