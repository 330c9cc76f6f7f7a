"""The channels-last pass (runtime/layout.py): which Conv chains it converts, where it puts
transposes, and that converted programs compute what onnxruntime computes."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from walle_core.runtime.session import Session

RNG = np.random.default_rng(11)


def _inverted_residual(cin: int = 8, mid: int = 24, stride: int = 1, residual: bool = True,
                       depthwise: bool = True, extra_output: bool = False,
                       batch: int = 1, hw: int = 9) -> bytes:
    """MobileNetV2's block: 1x1 expand + Clip(0, 6), 3x3 depthwise + Clip, 1x1 project, (+ x),
    then a GlobalAveragePool head (something NCHW reads the chain's end)."""
    def w(*shape: int) -> np.ndarray:
        return (RNG.standard_normal(shape) * 0.3).astype(np.float32)

    inits = [numpy_helper.from_array(a, n) for a, n in [
        (w(mid, cin, 1, 1), "w1"), (w(mid), "b1"),
        (w(mid, 1, 3, 3) if depthwise else w(mid, mid, 1, 1), "wd"), (w(mid), "bd"),
        (w(cin, mid, 1, 1), "w2"), (w(cin), "b2"),
        (np.array(0, np.float32), "lo"), (np.array(6, np.float32), "hi")]]
    dw = dict(group=mid, pads=[1, 1, 1, 1], strides=[stride, stride]) if depthwise else {}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["e"]),
             helper.make_node("Clip", ["e", "lo", "hi"], ["e6"]),
             helper.make_node("Conv", ["e6", "wd", "bd"], ["d"], **dw),
             helper.make_node("Clip", ["d", "lo", "hi"], ["d6"]),
             helper.make_node("Conv", ["d6", "w2", "b2"], ["p"])]
    last = "p"
    if residual and stride == 1:
        nodes.append(helper.make_node("Add", ["p", "x"], ["r"]))
        last = "r"
    nodes.append(helper.make_node("GlobalAveragePool", [last], ["y"]))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    if extra_output:  # the expand's output is also a graph output: transposed back
        outputs.append(helper.make_tensor_value_info("e6", TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                       [batch, cin, hw, hw])],
        outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                             ir_version=9).SerializeToString()


def _run(model: bytes, backend: str, batch: int = 1, cin: int = 8, hw: int = 9
         ) -> tuple[dict, list[np.ndarray]]:
    x = RNG.standard_normal((batch, cin, hw, hw)).astype(np.float32)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    session = Session(model, backend=backend)
    got = list(session.run({"x": x}).values())
    for g, w_ in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w_, rtol=1e-4, atol=1e-4)
    program = next(iter(session._plans.values())).program
    return program.stats, program.steps


def _layouts(steps: list) -> list[str]:
    return [s.prim.attrs.get("layout", "NCHW") for s in steps
            if s.prim.kind == "Kernel" and s.prim.op_type == "Conv"]


@pytest.mark.parametrize("stride", [1, 2])
def test_inverted_residual_runs_channels_last(stride: int) -> None:
    pytest.importorskip("walle_backend_numba")
    stats, steps = _run(_inverted_residual(stride=stride), "numba")
    assert stats["channels_last_convs"] == 3
    assert _layouts(steps) == ["NHWC"] * 3
    # one transpose in (x, read by the expand and, at stride 1, as the project's residual);
    # none out: the global pool reads the chain's end channels-last
    assert stats["layout_transposes"] == 1
    assert stats["channels_last_pools"] == 1
    rasters = [s for s in steps if s.prim.kind == "Raster"]
    assert len(rasters) == 1
    pool = [s for s in steps if s.prim.kind == "Kernel" and
            s.prim.op_type == "GlobalAveragePool"]
    assert pool[0].prim.attrs["layout"] == "NHWC"
    residual = [s for s in steps if s.prim.kind == "Kernel" and s.prim.attrs.get("fused_add")]
    assert len(residual) == (1 if stride == 1 else 0)


def test_batch_of_two_and_an_extra_output_transposed_back() -> None:
    pytest.importorskip("walle_backend_numba")
    stats, steps = _run(_inverted_residual(batch=2, extra_output=True), "numba", batch=2)
    assert stats["channels_last_convs"] == 3
    assert stats["layout_transposes"] == 2  # in, and the extra output back to NCHW


def test_chains_without_a_depthwise_conv_stay_nchw() -> None:
    pytest.importorskip("walle_backend_numba")
    stats, steps = _run(_inverted_residual(depthwise=False), "numba")
    assert stats["channels_last_convs"] == 0
    assert _layouts(steps) == ["NCHW"] * 3
    assert not any(s.prim.kind == "Raster" for s in steps)


def test_layout_env_switch_keeps_nchw(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("walle_backend_numba")
    monkeypatch.setenv("WALLE_LAYOUT", "nchw")
    stats, steps = _run(_inverted_residual(), "numba")
    assert "channels_last_convs" not in stats
    assert _layouts(steps) == ["NCHW"] * 3


def test_a_lone_depthwise_conv_is_not_worth_two_transposes() -> None:
    wd = (RNG.standard_normal((6, 1, 3, 3)) * 0.3).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "wd"], ["y"], group=6, pads=[1, 1, 1, 1])], "dw",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6, 9, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(wd, "wd")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              ir_version=9).SerializeToString()
    pytest.importorskip("walle_backend_numba")
    stats, steps = _run(model, "numba", cin=6)
    assert stats["channels_last_convs"] == 0
    assert _layouts(steps) == ["NCHW"]


@pytest.mark.parametrize("group", [1, 6])
def test_reference_kernel_runs_a_channels_last_conv(group: int) -> None:
    """The reference backend (every step's fallback) runs NHWC Conv steps by transposing
    around its NCHW kernel: residual added and activation applied in NHWC."""
    from walle_core.ir.primitives import Kernel
    from walle_core.reference_backend import kernel

    x = RNG.standard_normal((2, 6, 7, 7)).astype(np.float32)
    w = RNG.standard_normal((6, 6 // group, 3, 3)).astype(np.float32)
    b = RNG.standard_normal(6).astype(np.float32)
    r = RNG.standard_normal((2, 6, 4, 4)).astype(np.float32)
    attrs = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2], "group": group}
    nchw = np.empty((2, 6, 4, 4), np.float32)
    kernel(Kernel("Conv", "", dict(attrs, fused_add=True, fused_activation="relu"), 13),
           [x, w, b, r], [nchw])
    nhwc = np.empty((2, 4, 4, 6), np.float32)
    kernel(Kernel("Conv", "", dict(attrs, fused_add=True, fused_activation="relu",
                                   layout="NHWC"), 13),
           [x.transpose(0, 2, 3, 1), w.transpose(2, 3, 1, 0), b, r.transpose(0, 2, 3, 1)],
           [nhwc])
    assert (nchw >= 0).all() and (nchw > 0).any()
    np.testing.assert_allclose(nhwc.transpose(0, 3, 1, 2), nchw, rtol=1e-5, atol=1e-5)


def test_backends_that_do_not_declare_it_keep_nchw() -> None:
    from walle_core.reference_backend import ReferenceBackend
    from walle_core.runtime.backends import PlanningView

    class NoLayouts(ReferenceBackend):
        def channels_last_ops(self) -> set[tuple[str, str]]:
            return set()

    assert ("", "Conv") in PlanningView([ReferenceBackend()]).channels_last_ops()
    assert ("", "Conv") not in PlanningView([NoLayouts(), ReferenceBackend()]).channels_last_ops()


def _stem_chain(affine_only: bool = False) -> bytes:
    """An RGB stem (3x3 stride 2, 3 -> 8) feeding a depthwise 3x3 (or, ``affine_only``, a 1x1
    depthwise: a per-channel scale, as a folded BatchNorm) and a 1x1 Conv, Relu between."""
    k = 1 if affine_only else 3
    inits = [numpy_helper.from_array((RNG.standard_normal(s) * 0.3).astype(np.float32), n)
             for s, n in [((8, 3, 3, 3), "ws"), ((8,), "bs"), ((8, 1, k, k), "wd"),
                          ((12, 8, 1, 1), "wp")]]
    nodes = [helper.make_node("Conv", ["x", "ws", "bs"], ["s"], pads=[1, 1, 1, 1],
                              strides=[2, 2]),
             helper.make_node("Relu", ["s"], ["s1"]),
             helper.make_node("Conv", ["s1", "wd"], ["d"], group=8,
                              pads=[k // 2] * 4),
             helper.make_node("Relu", ["d"], ["d1"]),
             helper.make_node("Conv", ["d1", "wp"], ["y"])]
    graph = helper.make_graph(
        nodes, "stem", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 15, 15])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                             ir_version=9).SerializeToString()


def test_an_rgb_stem_starts_the_chain_without_an_entry_transpose() -> None:
    pytest.importorskip("walle_backend_numba")
    stats, steps = _run(_stem_chain(), "numba", cin=3, hw=15)
    assert stats["channels_last_convs"] == 3
    assert stats["layout_transposes"] == 1  # only out: the stem reads the NCHW input itself
    convs = [s for s in steps if s.prim.kind == "Kernel"]
    assert convs[0].prim.attrs["input_layout"] == "NCHW"
    assert steps[-1].prim.kind == "Raster"


def test_a_folded_batchnorm_is_no_reason_for_a_chain() -> None:
    pytest.importorskip("walle_backend_numba")
    stats, steps = _run(_stem_chain(affine_only=True), "numba", cin=3, hw=15)
    assert stats["channels_last_convs"] == 0
    assert _layouts(steps) == ["NCHW"] * 3


def test_weights_are_held_once_the_graph_keeps_an_oihw_view_of_the_hwio_copy() -> None:
    """The pass's HWIO copies replace the session graph's weights (as transposed views), so
    no weight is held twice; the views hold the same values the model file has."""
    pytest.importorskip("walle_backend_numba")
    import onnx

    model = _inverted_residual()
    proto = onnx.load_from_string(model)
    original = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    session = Session(model, backend="numba")
    weights = {v.name: v.const for v in session.graph.initializers if v.name in
               ("w1", "wd", "w2")}
    assert len(weights) == 3
    for name, view in weights.items():
        np.testing.assert_array_equal(view, original[name])
        assert not view.flags.c_contiguous  # a view of the kernel's HWIO array
        assert view.base is not None and view.base.flags.c_contiguous
        assert view.base.shape == tuple(original[name].shape[i] for i in (2, 3, 1, 0))
    x = RNG.standard_normal((1, 8, 9, 9)).astype(np.float32)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(session.run({"x": x})["y"], want[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_reference_and_numba_global_pools_read_channels_last(op: str) -> None:
    """A global pool at a chain's end reads [N, H, W, C] and writes [N, C, 1, 1]."""
    pytest.importorskip("walle_backend_numba")
    from walle_backend_numba import nnops

    from walle_core.ir.dtypes import from_numpy
    from walle_core.ir.primitives import Kernel, TensorSpec
    from walle_core.reference_backend import kernel

    x = RNG.standard_normal((2, 5, 7, 24)).astype(np.float32)
    want = x.max(axis=(1, 2)) if op == "GlobalMaxPool" else x.mean(axis=(1, 2))
    ref = np.empty((2, 24, 1, 1), np.float32)
    kernel(Kernel(op, "", {"layout": "NHWC"}, 13), [x], [ref])
    np.testing.assert_allclose(ref[:, :, 0, 0], want, rtol=1e-5, atol=1e-6)
    f32 = from_numpy(np.float32)
    run = nnops.plan(op, {"layout": "NHWC"}, 13, [TensorSpec(x.shape, f32)],
                     [TensorSpec((2, 24, 1, 1), f32)])
    assert run is not None
    got = np.full((2, 24, 1, 1), np.nan, np.float32)
    run([x], [got])
    np.testing.assert_allclose(got[:, :, 0, 0], want, rtol=1e-5, atol=1e-6)
