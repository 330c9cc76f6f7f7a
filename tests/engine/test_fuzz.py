"""Fuzzing the frontend and planner with mutated models: only engine errors may escape."""

from __future__ import annotations

import os

import numpy as np
import onnx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from walle_core import Session
from walle_core.ir.errors import WalleError

OPS = ["Conv", "Relu", "Add", "MatMul", "Reshape", "Transpose", "Slice", "Gather", "Pad",
       "MaxPool", "Concat", "Softmax", "NoSuchOp", "Split", "Expand", "ReduceSum", "Cast"]


def base_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [
        onnx.numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
        onnx.numpy_helper.from_array(np.array([1, -1], np.int64), "shape"),
        onnx.numpy_helper.from_array(np.array([0, 1, 1, 0], np.int64), "pads"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Pad", ["r", "pads"], ["p"]),
        helper.make_node("Reshape", ["p", "shape"], ["f"]),
        helper.make_node("Softmax", ["f"], ["y"], axis=1),
    ]
    graph = helper.make_graph(nodes, "fuzz",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


BASE = base_model()
BYTES = BASE.SerializeToString()
FEED = {"x": np.ones((1, 3, 5, 5), np.float32)}


def try_model(data: bytes | onnx.ModelProto) -> None:
    try:
        session = Session(data)
        session.run(FEED)
    except WalleError:
        pass


EXAMPLES = int(os.environ.get("WALLE_FUZZ_EXAMPLES", 150))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.integers(0, len(BYTES) - 1), st.integers(0, 255)), max_size=8),
       st.integers(1, len(BYTES)))
@example(flips=[(148, 128)], keep=363)  # a graph name that is not UTF-8 (found by this test)
def test_byte_mutations(flips: list[tuple[int, int]], keep: int) -> None:
    data = bytearray(BYTES[:keep] if keep < len(BYTES) // 2 else BYTES)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    try_model(bytes(data))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(node=st.integers(0, 4), op=st.sampled_from(OPS), ints=st.lists(st.integers(-3, 9),
       max_size=6), dims=st.lists(st.integers(-1, 5), min_size=0, max_size=5),
       opset=st.integers(1, 30), drop_input=st.booleans())
def test_structural_mutations(node: int, op: str, ints: list[int], dims: list[int], opset: int,
                              drop_input: bool) -> None:
    model = onnx.ModelProto()
    model.CopyFrom(BASE)
    n = model.graph.node[node]
    n.op_type = op
    for attr in n.attribute:
        if attr.type == onnx.AttributeProto.INTS:
            del attr.ints[:]
            attr.ints.extend(ints)
    if drop_input and len(n.input) > 1:
        n.input[-1] = ""
    model.graph.initializer[1].CopyFrom(
        onnx.numpy_helper.from_array(np.array(dims, np.int64), "shape"))
    model.opset_import[0].version = opset
    try_model(model)
