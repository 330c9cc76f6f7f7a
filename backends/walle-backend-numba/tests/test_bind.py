"""Steps bound to their buffers once (``CompiledStep.bind``): same results, kernels called
with no Python frame in between, and a failing bound step named by the executor."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from walle_backend_numba.checking import ENGINE

pytestmark = pytest.mark.skipif(not ENGINE, reason="the tensor engine is not in this core")
onnx = pytest.importorskip("onnx")


def _model() -> object:
    """A DIN-like chain: embedding gather, concat, Linear, PRelu-style where, reduce."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    table = numpy_helper.from_array(rng.standard_normal((40, 6)).astype(np.float32), "table")
    w = numpy_helper.from_array(rng.standard_normal((12, 5)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "b")
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["emb"]),
        helper.make_node("Concat", ["emb", "x"], ["cat"], axis=1),
        helper.make_node("MatMul", ["cat", "w"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["lin"]),
        helper.make_node("Relu", ["lin"], ["act"]),
        helper.make_node("ReduceSum", ["act"], ["y"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "bind",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [7]),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [7, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [])], [table, w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 9
    return model


def _feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4)
    return {"ids": rng.integers(-40, 40, 7).astype(np.int64),
            "x": rng.standard_normal((7, 6)).astype(np.float32)}


def _session(backend: str) -> object:
    session_cls = pytest.importorskip("walle_core.runtime.session").Session
    return session_cls(_model(), backend=backend, threads=2)


def test_bound_steps_match_the_reference_and_skip_python_frames() -> None:
    import numba

    got_session, want_session = _session("numba"), _session("reference")
    for _ in range(3):  # the same buffers run after run
        feeds = _feeds()
        got = got_session.run(feeds)["y"]  # type: ignore[attr-defined]
        want = want_session.run(feeds)["y"]  # type: ignore[attr-defined]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    exe = got_session._last[1]  # type: ignore[attr-defined]
    direct = [c for c in exe._calls if isinstance(c, functools.partial) and
              isinstance(c.func, numba.core.registry.CPUDispatcher)]
    # every step here but the gather (its status is checked in Python) calls its kernel
    # straight from the executor
    assert len(direct) >= len(exe._calls) - 2, [type(c) for c in exe._calls]


def test_a_failing_bound_step_is_named() -> None:
    from walle_core.ir.errors import ExecutionError

    session = _session("numba")
    session.run(_feeds())  # type: ignore[attr-defined]
    exe = session._last[1]  # type: ignore[attr-defined]
    op = exe.ops[-1]

    def broken() -> None:
        raise ValueError("a kernel failed")

    exe._calls[-1] = broken
    exe._bound[id(broken)] = op
    with pytest.raises(ExecutionError, match=r"from node .* failed on numba: ValueError: a kernel"):
        session.run(_feeds())  # type: ignore[attr-defined]


def test_out_of_range_index_still_raises_when_bound() -> None:
    from walle_core.ir.errors import ExecutionError

    session = _session("numba")
    feeds = _feeds()
    feeds["ids"][2] = 40  # one past the table
    with pytest.raises(ExecutionError, match="index out of range"):
        session.run(feeds)  # type: ignore[attr-defined]
