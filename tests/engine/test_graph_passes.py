"""Conv+BatchNormalization folding: same results as onnxruntime, fewer passes."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from walle_core import Session
from walle_core.ir import dtypes
from walle_core.ir.primitives import TensorSpec


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
    # a BN that cannot fold is a per-channel scale+shift: a 1x1 depthwise Conv on NCHW
    assert ops.count("Conv") == (2 if extra_reader else 1) and "BatchNormalization" not in ops
    got = session.run({"x": x})
    for name, value in zip(["y", "z"], want, strict=False):
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-5)


def _ort(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feeds)


def _computed(name: str, array: np.ndarray, nodes: list[onnx.NodeProto],
              inits: list[onnx.TensorProto]) -> None:
    """``name`` = ConstantOfShape(Shape(noise)) * 0.5 + noise: a constant subgraph, as the light
    models compute their weights, that still yields data worth checking (``noise * 1.5``)."""
    inits.append(numpy_helper.from_array(array, f"{name}_noise"))
    nodes += [
        helper.make_node("Shape", [f"{name}_noise"], [f"{name}_shape"]),
        helper.make_node("ConstantOfShape", [f"{name}_shape"], [f"{name}_fill"],
                         value=numpy_helper.from_array(np.array([0.5], np.float32))),
        helper.make_node("Mul", [f"{name}_fill", f"{name}_noise"], [f"{name}_half"]),
        helper.make_node("Add", [f"{name}_half", f"{name}_noise"], [name]),
    ]


def computed_weights_model() -> onnx.ModelProto:
    """Conv -> BN -> Mul -> Add (Caffe2-style affine) -> Relu, then a Concat with the input
    and a pre-activation BN -> Mul -> Add -> Relu (densenet), every weight computed."""
    rng = np.random.default_rng(5)
    c_in, c_out = 3, 8
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    _computed("w", rng.standard_normal((c_out, c_in, 3, 3)).astype(np.float32), nodes, inits)
    for prefix, ch in (("bn1", c_out), ("bn2", c_out + c_in)):
        _computed(f"{prefix}_g", rng.uniform(0.5, 2, ch).astype(np.float32), nodes, inits)
        _computed(f"{prefix}_b", rng.standard_normal(ch).astype(np.float32), nodes, inits)
        _computed(f"{prefix}_m", rng.standard_normal(ch).astype(np.float32), nodes, inits)
        _computed(f"{prefix}_v", rng.uniform(0.1, 3, ch).astype(np.float32), nodes, inits)
        _computed(f"{prefix}_s", rng.uniform(0.5, 2, (ch, 1, 1)).astype(np.float32), nodes,
                  inits)
        _computed(f"{prefix}_t", rng.standard_normal((ch, 1, 1)).astype(np.float32), nodes,
                  inits)
    nodes += [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "bn1_g", "bn1_b", "bn1_m", "bn1_v"],
                         ["n1"], epsilon=1e-3),
        helper.make_node("Mul", ["n1", "bn1_s"], ["s1"]),
        helper.make_node("Add", ["bn1_t", "s1"], ["t1"]),  # constant first: commutes
        helper.make_node("Relu", ["t1"], ["r1"]),
        helper.make_node("Concat", ["r1", "x"], ["cat"], axis=1),
        helper.make_node("BatchNormalization", ["cat", "bn2_g", "bn2_b", "bn2_m", "bn2_v"],
                         ["n2"]),
        helper.make_node("Mul", ["n2", "bn2_s"], ["s2"]),
        helper.make_node("Add", ["s2", "bn2_t"], ["t2"]),
        helper.make_node("Relu", ["t2"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "computed", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [1, c_in, 9, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)], ir_version=9)


@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_computed_weights_fold_into_conv_and_one_scale_step(backend: str) -> None:
    if backend == "numba":
        pytest.importorskip("walle_backend_numba")
    model = computed_weights_model()
    x = np.random.default_rng(0).standard_normal((1, 3, 9, 9)).astype(np.float32)
    session = Session(model.SerializeToString(), backend=backend)
    stats = session.graph_stats
    assert stats["conv_batchnorm_folded"] == 1  # needs the computed weights as constants
    # two Mul/Add pairs: the first folds into the Conv, the second into the scale+shift (which
    # is itself a Conv, so either counter may take it)
    assert stats["conv_affine_folded"] + stats["channel_affine_merged"] == 4
    ops = [n.op_type for n in session.graph.nodes]
    assert sorted(ops) == ["Concat", "Conv", "Conv", "Relu", "Relu"]  # BN: a 1x1 depthwise
    assert not {"ConstantOfShape", "Shape", "Mul", "Add"} & set(ops)
    program = session.plan_for({"x": TensorSpec((1, 3, 9, 9), dtypes.float32)})
    assert program is not None
    # after the Concat, the pre-activation BN with its Mul and Add is one 1x1 depthwise Conv
    # (numba: a native step with the Relu fused; reference: a MatMul, then the Relu); nothing
    # computes or broadcasts their scale or shift per run
    concat = max(k for k, s in enumerate(program.steps) if s.origin.startswith("Concat"))
    tail = [s.prim.kind for s in program.steps[concat + 1:]]
    assert tail == (["Kernel"] if backend == "numba" else ["MatMul", "Elementwise"])
    np.testing.assert_allclose(session.run({"x": x})["y"], _ort(model, {"x": x})[0],
                               rtol=1e-5, atol=1e-5)


def test_constant_folding_guard_and_source_graph_untouched() -> None:
    from walle_core.frontend.onnx import load_model
    from walle_core.runtime.constant_folding import fold_constants

    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["big"],
                              value=numpy_helper.from_array(np.array([2.0], np.float32))),
             helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
             helper.make_node("Add", ["x", "total"], ["y"])]
    inits = [numpy_helper.from_array(np.array([256, 256], np.int64), "shape")]
    graph = helper.make_graph(nodes, "guard", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [2])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)], ir_version=9)
    source = load_model(model.SerializeToString())
    kept, n_kept = fold_constants(source, budget=64 << 10)  # 256 KB would not fit in 64 KB
    assert n_kept == 0 and [n.op_type for n in kept.nodes] == [n.op_type for n in source.nodes]
    folded, n_folded = fold_constants(source)
    assert n_folded == 2 and [n.op_type for n in folded.nodes] == ["Add"]
    assert float(folded.nodes[0].inputs[1].const) == 2.0 * 256 * 256  # type: ignore[union-attr]
    assert all(o.const is None for n in source.nodes for o in n.outputs)
    x = np.array([1.0, -1.0], np.float32)
    np.testing.assert_allclose(Session(model.SerializeToString()).run({"x": x})["y"],
                               _ort(model, {"x": x})[0])


def test_folded_weights_do_not_stay_alive_beside_their_replacements() -> None:
    """After BatchNorm folds into the Conv, the optimized graph lists only the weights it
    reads: the pre-fold Conv weight and the BatchNorm vectors are gone (they kept DenseNet's
    old weights in memory), and the session keeps the source graph's op counts, not the
    source graph."""
    import gc
    import weakref

    from walle_core.frontend.onnx import load_model
    from walle_core.runtime.graph_passes import optimize_graph

    source = load_model(conv_bn(extra_reader=False, with_bias=True).SerializeToString())
    old_w = next(v for v in source.initializers if v.name == "w")
    graph, stats = optimize_graph(source)
    names = {v.name for v in graph.initializers}
    assert stats["initializers_dropped"] >= 5
    assert not names & {"w", "b", "gamma", "beta", "mean", "var"}
    read = {id(v) for n in graph.walk() for v in n.inputs if v is not None}
    assert all(id(v) in read for v in graph.initializers)

    session = Session(conv_bn(extra_reader=False, with_bias=True).SerializeToString())
    assert session.ops_before == {"Conv": 1, "BatchNormalization": 1, "Relu": 1}
    assert not hasattr(session, "source_graph")
    ref = weakref.ref(old_w.const)
    del source, old_w
    gc.collect()
    assert ref() is None  # nothing the optimized graph holds keeps the old weight alive
