"""Concatenations whose parts are contiguous blocks of the result are not copied: each part's
producer writes into its block (host memory only)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from walle_core.runtime.session import Session

RNG = np.random.default_rng(11)


def _run(nodes: list, x_shape: list[int], outputs: list[str], backend: str = "reference"
         ) -> dict[str, int]:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              ir_version=9).SerializeToString()
    x = RNG.standard_normal(x_shape).astype(np.float32)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    session = Session(model, backend=backend)
    for _ in range(2):  # the second run reuses the arena: stale blocks would show
        got = session.run({"x": x})
        for name, w in zip(outputs, want, strict=True):
            np.testing.assert_allclose(got[name], w, rtol=1e-6, atol=1e-6)
    program = next(iter(session._plans.values())).program
    return {"in_place": program.stats.get("concats_in_place", 0),
            "rasters": sum(s.prim.kind == "Raster" for s in program.steps)}


def _dense_block(layers: int) -> list:
    """DenseNet-style: each layer concatenates its input with relu(scale * input)."""
    nodes, prev = [], "x"
    for i in range(layers):
        nodes += [helper.make_node("Relu", [prev], [f"r{i}"]),
                  helper.make_node("Neg", [f"r{i}"], [f"y{i}"]),
                  helper.make_node("Concat", [prev, f"y{i}"], [f"c{i}"], axis=1)]
        prev = f"c{i}"
    return nodes + [helper.make_node("Sigmoid", [prev], ["out"])]


@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_channel_concat_chain_is_written_in_place(backend: str) -> None:
    if backend == "numba":
        pytest.importorskip("walle_backend_numba")
    got = _run(_dense_block(3), [1, 4, 5, 6], ["out"], backend)
    # the first concat reads the feed x (a feed is not produced in place): it stays a copy
    assert got["in_place"] == 2 and got["rasters"] == 1


def test_branches_concatenated_in_place_with_a_part_also_read_elsewhere() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("Sigmoid", ["x"], ["b"]),
             helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
             helper.make_node("Tanh", ["c"], ["t"]),
             helper.make_node("Mul", ["a", "a"], ["aa"])]  # a is read again after the concat
    got = _run(nodes, [1, 3, 4, 4], ["t", "aa"])
    assert got == {"in_place": 1, "rasters": 0}


@pytest.mark.parametrize("axis,shape", [(3, [1, 3, 4, 4]), (1, [2, 3, 4, 4])])
def test_concat_whose_parts_interleave_is_still_a_copy(axis: int, shape: list[int]) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("Sigmoid", ["x"], ["b"]),
             helper.make_node("Concat", ["a", "b"], ["c"], axis=axis)]
    got = _run(nodes, shape, ["c"])
    assert got["in_place"] == 0 and got["rasters"] == 1


def test_part_that_is_a_graph_output_is_copied() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("Sigmoid", ["x"], ["b"]),
             helper.make_node("Concat", ["a", "b"], ["c"], axis=1)]
    got = _run(nodes, [1, 3, 4, 4], ["c", "a"])
    assert got["in_place"] == 0 and got["rasters"] == 1
