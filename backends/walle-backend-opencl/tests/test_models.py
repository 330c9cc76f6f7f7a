"""End to end: the light ONNX models through ``Session(..., backend="opencl")``.

Each model must match its expected output shipped with onnx and the reference backend, with
most steps running as device kernels (the rest are counted host fallbacks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
FAST = ["squeezenet", "shufflenet"]
SLOW = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "vgg19",
        "zfnet512"]


def _compare_light(name: str) -> None:
    from walle_core import Session

    path = LIGHT / f"light_{name}.onnx"
    session, reference = Session(path, backend="opencl"), Session(path, backend="reference")
    (inp,) = session.inputs
    shape = tuple(int(d) for d in inp.shape)
    n = int(np.prod(shape))
    feeds = {inp.name: (np.arange(n).reshape(shape) / n).astype(np.float32)}
    (got,) = session.run(feeds).values()
    (want,) = reference.run(feeds).values()
    expected_file = str(LIGHT / f"light_{name}_output_0.pb")
    expected = onnx.numpy_helper.to_array(onnx.load_tensor(expected_file))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=1e-7)


@pytest.mark.parametrize("name", FAST)
def test_light_model(opencl, name: str) -> None:  # type: ignore[no-untyped-def]
    _compare_light(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_light_model_slow(opencl, name: str) -> None:  # type: ignore[no-untyped-def]
    _compare_light(name)


def test_random_weight_cnn_runs_on_device(opencl) -> None:  # type: ignore[no-untyped-def]
    """Light models are near-constant; random weights check the numerics through the engine."""
    from onnx import TensorProto, helper, numpy_helper

    from walle_core import Session

    rng = np.random.default_rng(1)

    def w(name: str, *shape: int) -> object:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p1"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 10])],
        [w("w1", 8, 3, 3, 3), w("b1", 8), w("wf", 10, 8), w("bf", 10)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    session = Session(model.SerializeToString(), backend="opencl")
    got = session.run({"x": x})["y"]
    want = Session(model.SerializeToString(), backend="reference").run({"x": x})["y"]
    assert got.std() > 1e-3
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_constant_outputs_come_back_as_arrays(opencl) -> None:  # type: ignore[no-untyped-def]
    """Shape/Size fold to constants that the executor returns without a download."""
    from onnx import TensorProto, helper

    from walle_core import Session

    nodes = [helper.make_node("Size", ["x"], ["n"]), helper.make_node("Shape", ["x"], ["s"])]
    graph = helper.make_graph(
        nodes, "consts", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("n", TensorProto.INT64, []),
         helper.make_tensor_value_info("s", TensorProto.INT64, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    out = Session(model.SerializeToString(), backend="opencl").run(
        {"x": np.ones((3, 4), np.float32)})
    assert type(out["n"]) is np.ndarray and out["n"].shape == () and int(out["n"]) == 12
    np.testing.assert_array_equal(out["s"], [3, 4])
