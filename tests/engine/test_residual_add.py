"""Relu(Conv(x) + shortcut): the shortcut is added in the Conv's epilogue (fused_add)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from walle_core.runtime.session import Session

RNG = np.random.default_rng(5)


def _block(extra_reader: bool = False, relu: bool = True) -> bytes:
    w = RNG.standard_normal((4, 4, 3, 3)).astype(np.float32) * 0.3
    b = RNG.standard_normal(4).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             # the shortcut comes after the Conv in node order: the fused Conv must move
             helper.make_node("MaxPool", ["x"], ["s"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c", "s"], ["a"])]
    out = "a"
    if relu:
        nodes.append(helper.make_node("Relu", ["a"], ["y"]))
        out = "y"
    outputs = [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)]
    if extra_reader:
        nodes.append(helper.make_node("Tanh", ["c"], ["t"]))
        outputs.append(helper.make_tensor_value_info("t", TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        outputs, [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                             ir_version=9).SerializeToString()


def _check(model: bytes) -> list[tuple[str, dict]]:
    pytest.importorskip("walle_backend_numba")
    x = RNG.standard_normal((1, 4, 8, 8)).astype(np.float32)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    session = Session(model, backend="numba")
    got = list(session.run({"x": x}).values())
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    program = next(iter(session._plans.values())).program
    return [(s.prim.kind, dict(getattr(s.prim, "attrs", {}))) for s in program.steps]


@pytest.mark.parametrize("relu", [True, False])
def test_shortcut_and_relu_go_into_the_conv(relu: bool) -> None:
    steps = _check(_block(relu=relu))
    kinds = [k for k, _ in steps]
    assert kinds == ["Kernel", "Kernel"]  # MaxPool, then the Conv moved after it
    assert "fused_add" not in steps[0][1]
    attrs = steps[1][1]
    assert attrs["fused_add"] is True
    assert attrs.get("fused_activation", "") == ("relu" if relu else "")


def test_conv_output_read_elsewhere_is_not_fused() -> None:
    steps = _check(_block(extra_reader=True))
    assert not any(a.get("fused_add") for _, a in steps)
