"""Conv + Relu / Clip fused into the native Conv step: same results on every backend."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from walle_core import Session
from walle_core.runtime.backends import available_names


def conv_act(act: str, group: int) -> onnx.ModelProto:
    rng = np.random.default_rng(5)
    c = 8
    w = rng.standard_normal((c, c // group, 3, 3)).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], group=group)]
    if act == "relu":
        nodes.append(helper.make_node("Relu", ["c"], ["y"]))
    else:
        nodes.append(helper.make_node("Clip", ["c", "lo", "hi"], ["y"]))
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
             numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
             numpy_helper.from_array(np.array(1.5, np.float32), "hi")]
    graph = helper.make_graph(nodes, "conv_act", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, c, 10, 10])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, [1, c, 10, 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9)


@pytest.mark.parametrize("backend", [b for b in ("reference", "numba", "opencl")
                                     if b in available_names()])
@pytest.mark.parametrize("act", ["relu", "clip"])
@pytest.mark.parametrize("group", [1, 8])
def test_fused_conv_activation(backend: str, act: str, group: int) -> None:
    if backend == "opencl":
        pytest.importorskip("pyopencl")
        import pyopencl as cl

        try:
            if not cl.get_platforms():
                pytest.skip("no OpenCL platform")
        except cl.Error:
            pytest.skip("no OpenCL platform")
    model = conv_act(act, group)
    x = np.random.default_rng(0).standard_normal((1, 8, 10, 10)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    session = Session(model.SerializeToString(), backend=backend)
    program = next(iter(session._plans.values())).program
    kinds = [s.prim.kind for s in program.steps]
    convs = [s.prim for s in program.steps if s.prim.kind == "Kernel"]
    if convs:  # planned natively: the activation rides on the Conv step
        assert kinds == ["Kernel"], kinds
        assert convs[0].attrs["fused_activation"] == act  # type: ignore[attr-defined]
    np.testing.assert_allclose(session.run({"x": x})["y"], want, rtol=1e-5, atol=1e-5)
