"""Conv+BatchNormalization folding: same results as onnxruntime, fewer passes."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from walle_core import Session


def conv_bn(extra_reader: bool, with_bias: bool) -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    c_in, c_out = 3, 8
    inits = [
        numpy_helper.from_array(rng.standard_normal((c_out, c_in, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.uniform(0.5, 2, c_out).astype(np.float32), "gamma"),
        numpy_helper.from_array(rng.standard_normal(c_out).astype(np.float32), "beta"),
        numpy_helper.from_array(rng.standard_normal(c_out).astype(np.float32), "mean"),
        numpy_helper.from_array(rng.uniform(0.1, 3, c_out).astype(np.float32), "var"),
    ]
    conv_inputs = ["x", "w"]
    if with_bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(c_out).astype(np.float32), "b"))
        conv_inputs.append("b")
    nodes = [helper.make_node("Conv", conv_inputs, ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["bn"],
                              epsilon=1e-3),
             helper.make_node("Relu", ["bn"], ["y"])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_reader:
        nodes.append(helper.make_node("Sigmoid", ["c"], ["z"]))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "conv_bn", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, c_in, 9, 9])], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)], ir_version=9)


@pytest.mark.parametrize("extra_reader", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_conv_batchnorm_folding_matches_onnxruntime(extra_reader: bool, with_bias: bool) -> None:
    model = conv_bn(extra_reader, with_bias)
    x = np.random.default_rng(0).standard_normal((1, 3, 9, 9)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})
    session = Session(model.SerializeToString(), backend="reference")
    # the Conv's output read elsewhere must not be folded away
    assert session.graph_stats["conv_batchnorm_folded"] == (0 if extra_reader else 1)
    ops = [n.op_type for n in session.graph.nodes]
    assert ("BatchNormalization" in ops) == extra_reader
    got = session.run({"x": x})
    for name, value in zip(["y", "z"], want, strict=False):
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-5)
