"""The ONNX checker and shape inference see a copy of the model without its large weights."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from walle_core.frontend.onnx.convert import LIGHT_LIMIT, without_weights
from walle_core.frontend.onnx.loader import load_model
from walle_core.ir.errors import ModelError


def _model(weight: np.ndarray, declare_weight_as_input: bool = False) -> onnx.ModelProto:
    """x [1, 64] @ w [64, 64] -> Reshape to [8, 8] (target shape: a small initializer)."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Reshape", ["h", "shape"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])]
    if declare_weight_as_input:  # IR < 4 style: an initializer that is also an input
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [64, 64]))
    graph = helper.make_graph(
        nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight, "w"),
         numpy_helper.from_array(np.array([8, 8], np.int64), "shape")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_light_copy_keeps_types_and_small_initializers() -> None:
    w = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    assert w.nbytes > LIGHT_LIMIT
    proto = _model(w)
    light = without_weights(proto)
    assert [t.name for t in light.weights] == ["w"] and light.added == {"w"}
    assert [t.name for t in light.model.graph.initializer] == ["shape"]
    full = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    lean = onnx.shape_inference.infer_shapes(light.model, strict_mode=True)
    assert {v.name: v.type for v in full.graph.value_info} == \
        {v.name: v.type for v in lean.graph.value_info}
    assert light.model.ByteSize() < proto.ByteSize() - w.nbytes + 1024


def test_weights_are_initializers_not_inputs() -> None:
    w = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    graph = load_model(_model(w))
    assert [v.name for v in graph.inputs] == ["x"]
    consts = {v.name: v.const for v in graph.initializers}
    np.testing.assert_array_equal(consts["w"], w)
    assert graph.outputs[0].type is not None and graph.outputs[0].type.shape == (8, 8)
    # an initializer the model itself declares as an input stays an (overridable) input
    declared = load_model(_model(w, declare_weight_as_input=True))
    assert [v.name for v in declared.inputs] == ["x", "w"]


def test_truncated_weight_is_still_rejected() -> None:
    proto = _model(np.ones((64, 64), np.float32))
    w = proto.graph.initializer[0]
    w.raw_data = w.raw_data[:-4]  # one float short: the checker no longer sees it
    with pytest.raises(ModelError):
        load_model(proto)
