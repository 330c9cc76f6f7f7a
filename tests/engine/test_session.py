"""Session behaviour: inputs as path/bytes/graph, metadata, feed validation, dynamic shapes,
memory reuse, and the errors a user sees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from walle_core import Session
from walle_core.frontend.onnx import load_model
from walle_core.ir.errors import InputError, ModelError, UnsupportedOpsError

from .conftest import LIGHT


def dynamic_mlp() -> onnx.ModelProto:
    """x[batch, seq, 8] @ W + b, Relu, then Reshape via Shape (a BERT-style dynamic pattern)."""
    w = onnx.numpy_helper.from_array(np.random.default_rng(1).standard_normal((8, 4))
                                     .astype(np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
        helper.make_node("Unsqueeze", ["b", "zero1"], ["b1"]),
        helper.make_node("Concat", ["b1", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["r", "shape"], ["y"]),
    ]
    inits = [w, onnx.numpy_helper.from_array(np.array(0, np.int64), "zero"),
             onnx.numpy_helper.from_array(np.array([0], np.int64), "zero1"),
             onnx.numpy_helper.from_array(np.array([-1], np.int64), "minus1")]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", None])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def expected_mlp(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    w = onnx.numpy_helper.to_array(model.graph.initializer[0])
    return np.maximum(x @ w, 0).reshape(x.shape[0], -1)


def test_accepts_path_bytes_and_graph(tmp_path: Path) -> None:
    model = dynamic_mlp()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    x = np.ones((2, 3, 8), np.float32)
    for source in (path, str(path), model.SerializeToString(), load_model(model)):
        out = Session(source).run({"x": x})["y"]
        np.testing.assert_allclose(out, expected_mlp(model, x), rtol=1e-6)


def test_metadata_keeps_symbolic_dims() -> None:
    s = Session(dynamic_mlp())
    (inp,) = s.inputs
    assert (inp.name, inp.dtype, inp.shape) == ("x", "float32", ("batch", "seq", 8))
    assert s.outputs[0].name == "y"


def test_dynamic_shapes_replan_and_cache() -> None:
    model = dynamic_mlp()
    s = Session(model)
    for shape in [(1, 5, 8), (3, 2, 8), (1, 5, 8), (3, 2, 8)]:
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        np.testing.assert_allclose(s.run({"x": x})["y"], expected_mlp(model, x), rtol=1e-5)
    assert len(s._plans) == 2  # one plan per distinct input shape, reused after


def test_wrong_input_name_dtype_and_shape() -> None:
    s = Session(dynamic_mlp())
    with pytest.raises(InputError, match=r"unknown input name.*\['x'\]"):
        s.run({"X": np.ones((1, 1, 8), np.float32)})
    with pytest.raises(InputError, match="missing input"):
        s.run({})
    with pytest.raises(InputError, match="expected dtype float32, got float64"):
        s.run({"x": np.ones((1, 1, 8))})
    with pytest.raises(InputError, match=r"expected shape \[batch,seq,8\].*axis 2 must be 8"):
        s.run({"x": np.ones((1, 1, 7), np.float32)})
    with pytest.raises(InputError, match="rank 3"):
        s.run({"x": np.ones((1, 8), np.float32)})


def test_symbolic_dims_must_agree_across_inputs() -> None:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"])], "g",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n"]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["n"])])
    s = Session(helper.make_model(graph, ir_version=9,
                                  opset_imports=[helper.make_opsetid("", 17)]))
    with pytest.raises(InputError, match="dim 'n' is 3"):
        s.run({"a": np.ones(2, np.float32), "b": np.ones(3, np.float32)})


def test_unsupported_ops_are_all_listed_at_once() -> None:
    nodes = [helper.make_node("FancyOp", ["x"], ["a"], name="first", domain="acme"),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("OtherOp", ["b"], ["y"], name="second", domain="acme")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, [2])],
                              [helper.make_tensor_value_info("y", 1, [2])])
    model = helper.make_model(graph, ir_version=9, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("acme", 3)])
    with pytest.raises(UnsupportedOpsError) as info:
        Session(model.SerializeToString(), backend="reference")
    message = str(info.value)
    assert "2 node(s)" in message
    assert "node 'first': acme::FancyOp (opset 3)" in message
    assert "node 'second': acme::OtherOp (opset 3)" in message
    assert [op.op_type for op in info.value.ops] == ["FancyOp", "OtherOp"]


def test_malformed_files_raise_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such model file"):
        Session(tmp_path / "missing.onnx")
    with pytest.raises(ModelError, match="not a valid ONNX protobuf|has no graph"):
        Session(b"\x08\x07garbage\xff\xff")
    model = dynamic_mlp()
    model.graph.node[0].input[1] = "nowhere"
    with pytest.raises(ModelError):
        Session(model.SerializeToString())


def test_unknown_backend_is_a_clear_error() -> None:
    from walle_core.runtime.backends import BackendError

    with pytest.raises(BackendError, match="no backend named 'nope'"):
        Session(dynamic_mlp(), backend="nope")


def test_memory_plan_reuses_buffers() -> None:
    s = Session(LIGHT / "light_resnet50.onnx")
    exe = next(iter(s._plans.values()))
    assert exe is not None
    mem = exe.memory
    assert mem.arena_bytes * 4 < mem.unshared_bytes  # reuse by lifetime
    # no two slots alive at the same step overlap in the arena
    from walle_core.runtime.memory import lifetimes

    p = exe.program
    life = lifetimes(p.steps, list(p.inputs.values()), [o for _, o in p.outputs],
                     set(p.builder.consts), p.aliases)
    spans = sorted((mem.offsets[s], mem.offsets[s] + p.slots[s].nbytes, life[s]) for s in life)
    for i, (_, a1, (f0, l0)) in enumerate(spans):
        for b0, _, (f1, l1) in spans[i + 1:]:
            if b0 >= a1:
                break
            assert l0 < f1 or l1 < f0, "overlapping buffers with overlapping lifetimes"


def test_resnet50_session_reports_its_search() -> None:
    # the timing itself is a benchmark (benchmarks/startup.py), not a test
    s = Session(LIGHT / "light_resnet50.onnx")
    exe = next(iter(s._plans.values()))
    assert exe is not None
    placement = exe.placement
    assert placement.seconds > 0 and placement.method
    assert len(placement.backends) == len(exe.program.steps)
    assert all(b.supports(step.prim) for b, step in zip(placement.backends, exe.program.steps,
                                                          strict=True))


def test_data_dependent_shapes_run_eagerly() -> None:
    graph = helper.make_graph(
        [helper.make_node("NonZero", ["x"], ["i"]),
         helper.make_node("Transpose", ["i"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, None)])
    model = helper.make_model(graph, ir_version=9, opset_imports=[helper.make_opsetid("", 17)])
    s = Session(model)
    out = s.run({"x": np.array([0, 1, 0, 2], np.float32)})["y"]
    np.testing.assert_array_equal(out, [[1], [3]])
