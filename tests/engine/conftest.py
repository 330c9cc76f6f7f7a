"""Helpers for engine tests: build one-node ONNX models and compare against onnx.reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
NP_TO_ONNX = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64,
              np.dtype(np.float64): TensorProto.DOUBLE, np.dtype(np.int32): TensorProto.INT32,
              np.dtype(np.bool_): TensorProto.BOOL, np.dtype(np.uint8): TensorProto.UINT8}


def one_node_model(op: str, feeds: dict[str, np.ndarray], n_out: int = 1,
                   inits: dict[str, np.ndarray] | None = None, opset: int = 21,
                   input_names: list[str] | None = None, **attrs: Any) -> onnx.ModelProto:
    """A model with one ``op`` node reading ``input_names`` (feeds, then initializers)."""
    inits = inits or {}
    names = input_names if input_names is not None else [*feeds, *inits]
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, names, outs, **attrs)
    types = {k: helper.make_tensor_type_proto(NP_TO_ONNX[v.dtype], v.shape)
             for k, v in {**feeds, **inits}.items()}
    data = {k: onnx.numpy_helper.from_array(v, k) for k, v in inits.items()}
    inferred = onnx.shape_inference.infer_node_outputs(
        onnx.defs.get_schema(op, opset), node, types, data)
    graph = helper.make_graph(
        [node], "t",
        [helper.make_tensor_value_info(k, NP_TO_ONNX[v.dtype], v.shape) for k, v in feeds.items()],
        [helper.make_value_info(o, inferred[o]) for o in outs],
        [onnx.numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def oracle(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[Any]:
    """onnxruntime's outputs (onnx.reference where onnxruntime lacks the op)."""
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception:
        from onnx.reference import ReferenceEvaluator

        return list(ReferenceEvaluator(model).run(None, feeds))
    return list(sess.run(None, feeds))


def run_both(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> tuple[list[Any], list[Any]]:
    """(walle outputs, oracle outputs) for ``model``."""
    from walle_core import Session

    got = Session(model).run(feeds)
    return [got[o.name] for o in model.graph.output], oracle(model, feeds)


def assert_matches(model: onnx.ModelProto, feeds: dict[str, np.ndarray], rtol: float = 1e-5,
                   atol: float = 1e-6) -> None:
    got, want = run_both(model, feeds)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape, (g.shape, w.shape)
        assert g.dtype == w.dtype, (g.dtype, w.dtype)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
