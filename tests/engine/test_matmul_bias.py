"""MatMul followed by a bias add: the bias rides in the MatMul's epilogue."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from walle_core.runtime.session import Session

RNG = np.random.default_rng(7)


def _model(bias: np.ndarray, gelu: bool = False, raw_use: bool = False) -> bytes:
    """y = x [2, 5, 16] @ w [16, 8] + bias (then GELU, or plus the product again)."""
    w = RNG.standard_normal((16, 8)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["p"]),
             helper.make_node("Add", ["p", "b"], ["h"])]
    out = "h"
    if gelu:  # 0.5 * h * (1 + erf(h / sqrt(2))): h appears three times
        nodes += [helper.make_node("Div", ["h", "sqrt2"], ["d"]),
                  helper.make_node("Erf", ["d"], ["e"]),
                  helper.make_node("Add", ["e", "one"], ["e1"]),
                  helper.make_node("Mul", ["h", "e1"], ["m"]),
                  helper.make_node("Mul", ["m", "half"], ["y"])]
        out = "y"
    if raw_use:  # the product without the bias is read too: no fusion possible
        nodes.append(helper.make_node("Add", ["h", "p"], ["y"]))
        out = "y"
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(bias, "b")]
    for name, v in (("sqrt2", np.sqrt(2)), ("one", 1.0), ("half", 0.5)):
        inits.append(numpy_helper.from_array(np.array(v, np.float32), name))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 16])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    return model.SerializeToString()


def _check(model: bytes, backend: str) -> dict[str, int]:
    x = RNG.standard_normal((2, 5, 16)).astype(np.float32)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    session = Session(model, backend=backend)
    got = list(session.run({"x": x}).values())
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
    program = next(iter(session._plans.values())).program
    kinds = [s.prim.kind for s in program.steps]
    return {"fused": program.stats["matmul_bias_fused"], "rasters": kinds.count("Raster"),
            "elementwise": kinds.count("Elementwise")}


@pytest.mark.parametrize("backend", ["reference", "numba"])
def test_row_bias_is_fused(backend: str) -> None:
    if backend == "numba":
        pytest.importorskip("walle_backend_numba")
    got = _check(_model(RNG.standard_normal(8).astype(np.float32)), backend)
    assert got == {"fused": 1, "rasters": 0, "elementwise": 0}


def test_bias_read_three_times_by_gelu_is_fused_once() -> None:
    got = _check(_model(RNG.standard_normal(8).astype(np.float32), gelu=True), "reference")
    assert got["fused"] == 1 and got["rasters"] == 0 and got["elementwise"] == 1


def test_full_size_bias_that_is_not_a_row_broadcast_stays_an_add() -> None:
    bias = RNG.standard_normal((5, 8)).astype(np.float32)  # differs per row
    got = _check(_model(bias), "reference")
    assert got["fused"] == 0 and got["elementwise"] == 1


def test_product_also_read_without_bias_is_not_fused() -> None:
    got = _check(_model(RNG.standard_normal(8).astype(np.float32), raw_use=True), "reference")
    assert got["fused"] == 0
