"""Each decomposed op family against onnx.reference (a numpy implementation of ONNX)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from .conftest import assert_matches, one_node_model

R = np.random.default_rng(0)


def f32(*shape: int) -> np.ndarray:
    return R.standard_normal(shape).astype(np.float32)


def i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


MOVEMENT: list[tuple[str, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Any]]] = [
    ("Transpose", {"x": f32(2, 3, 4, 5)}, {}, {"perm": [3, 1, 0, 2]}),
    ("Reshape", {"x": f32(2, 3, 4)}, {"s": i64(4, 0, -1)}, {}),
    ("Flatten", {"x": f32(2, 3, 4)}, {}, {"axis": 2}),
    ("Squeeze", {"x": f32(2, 1, 4, 1)}, {"a": i64(1, -1)}, {}),
    ("Unsqueeze", {"x": f32(2, 4)}, {"a": i64(0, 3)}, {}),
    ("Slice", {"x": f32(5, 6, 7)}, {"s": i64(4, 1, -1), "e": i64(0, 100, -8), "a": i64(0, 1, 2),
                                    "st": i64(-2, 2, -3)}, {}),
    ("Concat", {"a": f32(2, 3, 4), "b": f32(2, 1, 4), "c": f32(2, 5, 4)}, {}, {"axis": 1}),
    ("Tile", {"x": f32(2, 3)}, {"r": i64(3, 2)}, {}),
    ("Expand", {"x": f32(3, 1)}, {"s": i64(2, 3, 4)}, {}),
    ("DepthToSpace", {"x": f32(1, 8, 2, 3)}, {}, {"blocksize": 2, "mode": "DCR"}),
    ("DepthToSpace", {"x": f32(2, 8, 2, 3)}, {}, {"blocksize": 2, "mode": "CRD"}),
    ("SpaceToDepth", {"x": f32(2, 2, 4, 6)}, {}, {"blocksize": 2}),
    ("Gather", {"x": f32(4, 5, 3)}, {"i": np.array([[3, -1], [0, 2]], np.int64)}, {"axis": 1}),
    ("Identity", {"x": f32(3, 3)}, {}, {}),
]


@pytest.mark.parametrize("op,feeds,inits,attrs", MOVEMENT, ids=[m[0] for m in MOVEMENT])
def test_data_movement(op: str, feeds: dict, inits: dict, attrs: dict) -> None:
    assert_matches(one_node_model(op, feeds, inits=inits, **attrs), feeds)


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "wrap"])
def test_pad_modes(mode: str) -> None:
    x = f32(2, 3, 4, 5)
    pads = i64(0, 1, 2, 3, 1, 0, 3, 2)
    model = one_node_model("Pad", {"x": x}, inits={"p": pads, "v": np.array(1.5, np.float32)}
                           if mode == "constant" else {"p": pads}, mode=mode)
    assert_matches(model, {"x": x})


def test_pad_negative_crops() -> None:
    x = f32(4, 6)
    model = one_node_model("Pad", {"x": x}, inits={"p": i64(-1, 2, 1, -3)}, mode="reflect")
    assert_matches(model, {"x": x})


def test_split_uneven() -> None:
    x = f32(7, 4)
    model = one_node_model("Split", {"x": x}, n_out=3, inits={"s": i64(2, 4, 1)}, axis=0)
    assert_matches(model, {"x": x})


def test_gather_runtime_indices_uses_loop() -> None:
    x, idx = f32(5, 4), np.array([4, -5, 2, 2], np.int64)
    assert_matches(one_node_model("Gather", {"x": x, "i": idx}, axis=0), {"x": x, "i": idx})


def test_gather_elements_and_scatter() -> None:
    x = f32(3, 4)
    idx = np.array([[0, 3], [2, -1], [1, 1]], np.int64)
    assert_matches(one_node_model("GatherElements", {"x": x, "i": idx}, axis=1),
                   {"x": x, "i": idx})
    upd = f32(3, 2)
    for reduction in ("none", "add", "max"):
        feeds = {"x": x, "i": np.array([[0, 3], [2, 1], [1, 0]], np.int64), "u": upd}
        assert_matches(one_node_model("ScatterElements", feeds, axis=1, reduction=reduction),
                       feeds)


def test_gather_nd_and_scatter_nd() -> None:
    x = f32(2, 3, 4)
    idx = np.array([[[1], [0]], [[2], [1]]], np.int64)
    assert_matches(one_node_model("GatherND", {"x": x, "i": idx}, batch_dims=1),
                   {"x": x, "i": idx})
    feeds = {"x": x, "i": np.array([[1, 2], [0, 0]], np.int64), "u": f32(2, 4)}
    assert_matches(one_node_model("ScatterND", feeds), feeds)


CONVS = [
    dict(x=(1, 3, 9, 9), w=(4, 3, 3, 3), strides=[2, 2], pads=[1, 1, 1, 1]),
    dict(x=(2, 4, 8, 7), w=(6, 2, 3, 2), group=2, dilations=[2, 1]),
    dict(x=(1, 2, 7, 7), w=(3, 2, 3, 3), auto_pad="SAME_UPPER"),
    dict(x=(2, 2, 9), w=(3, 2, 4), strides=[3], pads=[2, 1]),
    dict(x=(1, 2, 4, 5, 5), w=(2, 2, 2, 3, 3)),
]


@pytest.mark.parametrize("case", CONVS, ids=range(len(CONVS)))
def test_conv_im2col(case: dict) -> None:
    case = dict(case)
    x, w = f32(*case.pop("x")), f32(*case.pop("w"))
    b = f32(w.shape[0])
    assert_matches(one_node_model("Conv", {"x": x}, inits={"w": w, "b": b}, **case), {"x": x},
                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", [
    dict(x=(1, 3, 4, 4), w=(3, 2, 3, 3), strides=[2, 2]),
    dict(x=(2, 4, 3, 5), w=(4, 1, 2, 3), group=2, pads=[1, 0, 0, 1], output_padding=[1, 0],
         strides=[2, 1]),
    dict(x=(1, 1, 3), w=(1, 2, 3), output_shape=[8], strides=[3]),
])
def test_conv_transpose_col2im(case: dict) -> None:
    case = dict(case)
    x, w = f32(*case.pop("x")), f32(*case.pop("w"))
    assert_matches(one_node_model("ConvTranspose", {"x": x}, inits={"w": w}, **case), {"x": x},
                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op,attrs", [
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("MaxPool", dict(kernel_shape=[2, 2], ceil_mode=1, strides=[2, 2], dilations=[1, 1])),
    ("AveragePool", dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=0)),
    ("AveragePool", dict(kernel_shape=[3, 2], pads=[1, 0, 1, 1], count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
])
def test_pooling_windows_plus_reduce(op: str, attrs: dict) -> None:
    x = f32(2, 3, 7, 8)
    assert_matches(one_node_model(op, {"x": x}, **attrs), {"x": x})


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Pow", "Max", "Less", "Equal"])
def test_broadcast_binaries(op: str) -> None:
    a, b = np.abs(f32(2, 1, 4)) + 0.5, np.abs(f32(3, 1)) + 0.5
    assert_matches(one_node_model(op, {"a": a, "b": b}), {"a": a, "b": b})


def test_integer_division_truncates() -> None:
    a, b = np.array([7, -7, 7, -7], np.int64), np.array([2, 2, -2, -2], np.int64)
    assert_matches(one_node_model("Div", {"a": a, "b": b}), {"a": a, "b": b})


@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "Tanh", "Exp", "Erf", "Softplus", "HardSwish",
                                "LeakyRelu", "Elu", "Selu", "Gelu", "Abs", "Round"])
def test_unary(op: str) -> None:
    x = f32(3, 5)
    assert_matches(one_node_model(op, {"x": x}, opset=21), {"x": x}, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceProd",
                                "ReduceL2", "ReduceLogSumExp", "ReduceSumSquare"])
def test_reduce(op: str) -> None:
    x = f32(3, 4, 5)
    model = one_node_model(op, {"x": x}, inits={"a": i64(0, -1)}, keepdims=0, opset=18)
    assert_matches(model, {"x": x}, rtol=1e-5)


@pytest.mark.parametrize("op,opset,axis", [("Softmax", 13, 1), ("LogSoftmax", 13, -1),
                                           ("Softmax", 11, 1)])
def test_softmax(op: str, opset: int, axis: int) -> None:
    x = f32(2, 3, 4)
    assert_matches(one_node_model(op, {"x": x}, opset=opset, axis=axis), {"x": x})


@pytest.mark.parametrize("sa,sb", [((2, 3, 4, 5), (5, 6)), ((3, 4), (2, 4, 5)), ((4,), (4, 3)),
                                   ((2, 1, 3, 4), (1, 5, 4, 2)), ((3, 4), (4,))])
def test_matmul_broadcast(sa: tuple, sb: tuple) -> None:
    a, b = f32(*sa), f32(*sb)
    assert_matches(one_node_model("MatMul", {"a": a, "b": b}), {"a": a, "b": b}, rtol=1e-5)


def test_gemm_transposes_and_bias() -> None:
    a, b, c = f32(4, 3), f32(5, 4), f32(5)
    model = one_node_model("Gemm", {"a": a}, inits={"b": b, "c": c}, transA=1, transB=1,
                           alpha=0.5, beta=2.0)
    assert_matches(model, {"a": a}, rtol=1e-5)


def test_batchnorm_and_cast() -> None:
    x = f32(2, 3, 4, 4)
    inits = {"s": f32(3), "b": f32(3), "m": f32(3), "v": np.abs(f32(3)) + 0.1}
    assert_matches(one_node_model("BatchNormalization", {"x": x}, inits=inits), {"x": x},
                   rtol=1e-5, atol=1e-5)
    assert_matches(one_node_model("Cast", {"x": x * 10}, to=7), {"x": x * 10})
