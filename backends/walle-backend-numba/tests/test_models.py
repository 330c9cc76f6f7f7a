"""End to end: ONNX models through ``Session(..., backend="numba")`` match the reference.

The light models (shipped inside the onnx package) have near-constant outputs, so a small
CNN with random weights (3x3, strided, depthwise, 1x1 convolutions, pooling, Gemm, softmax)
checks the kernels' numerics through the whole engine as well.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from walle_backend_numba.checking import ENGINE

pytestmark = pytest.mark.skipif(not ENGINE, reason="the tensor engine is not in this core")
onnx = pytest.importorskip("onnx")
LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
FAST = ["squeezenet", "shufflenet"]
SLOW = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "vgg19",
        "zfnet512"]


def _session(model: object, backend: str) -> object:
    session_cls = pytest.importorskip("walle_core.runtime.session").Session
    return session_cls(model, backend=backend, threads=2)


def _compare_light(name: str) -> None:
    path = LIGHT / f"light_{name}.onnx"
    numba_session, reference = _session(path, "numba"), _session(path, "reference")
    (inp,) = numba_session.inputs  # type: ignore[attr-defined]
    shape = tuple(int(d) for d in inp.shape)
    n = int(np.prod(shape))
    feeds = {inp.name: (np.arange(n).reshape(shape) / n).astype(np.float32)}
    (got,) = numba_session.run(feeds).values()  # type: ignore[attr-defined]
    (want,) = reference.run(feeds).values()  # type: ignore[attr-defined]
    expected_file = str(LIGHT / f"light_{name}_output_0.pb")
    expected = onnx.numpy_helper.to_array(onnx.load_tensor(expected_file))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=1e-7)


@pytest.mark.parametrize("name", FAST)
def test_light_model(name: str) -> None:
    _compare_light(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_light_model_slow(name: str) -> None:
    _compare_light(name)


def _small_cnn() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)

    def w(name: str, *shape: int) -> object:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], group=8, strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c2", "lo", "hi"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"]),
        helper.make_node("MaxPool", ["c3"], ["p3"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p3"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["y"], axis=-1),
    ]
    inits = [w("w1", 8, 3, 3, 3), w("b1", 8), w("w2", 8, 1, 3, 3), w("w3", 16, 8, 1, 1),
             w("b3", 16), w("wf", 10, 16), w("bf", 10),
             numpy_helper.from_array(np.array(0, np.float32), "lo"),
             numpy_helper.from_array(np.array(6, np.float32), "hi")]
    graph = helper.make_graph(
        nodes, "small_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def test_random_weight_cnn_matches_reference() -> None:
    model = _small_cnn()
    x = np.random.default_rng(2).standard_normal((2, 3, 16, 16)).astype(np.float32)
    got = _session(model, "numba").run({"x": x})["y"]  # type: ignore[attr-defined]
    want = _session(model, "reference").run({"x": x})["y"]  # type: ignore[attr-defined]
    assert got.std() > 1e-3
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
