"""Loading without ONNX's operator schemas: the validated-model cache and the native kernels'
own output shapes (``loader._validated``, ``infer.native_outputs``)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from walle_core.frontend.onnx import loader
from walle_core.frontend.onnx.infer import infer_outputs, native_outputs
from walle_core.ir import dtypes
from walle_core.ir.errors import ModelError
from walle_core.ir.graph import Node
from walle_core.ir.primitives import TensorSpec


def _conv_model(channels: int = 4) -> bytes:
    w = np.random.default_rng(0).standard_normal((channels, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    return model.SerializeToString()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WALLE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("WALLE_VALIDATION_CACHE", raising=False)
    return tmp_path / "validated"


def test_second_load_of_a_model_reads_the_validated_copy(cache: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    data = _conv_model()
    first = loader.load_model(data)
    stored = list(cache.glob("*.onnx"))
    assert len(stored) == 1
    # the checker and shape inference must not run again for the same model
    def boom(*_a: Any, **_k: Any) -> None:
        raise AssertionError("validated again")

    monkeypatch.setattr(onnx.checker, "check_model", boom)
    monkeypatch.setattr(loader, "_infer", boom)
    second = loader.load_model(data)
    assert [n.op_type for n in second.nodes] == [n.op_type for n in first.nodes]
    def types(g: Any) -> dict[str, Any]:
        return {v.name: v.type for n in g.nodes for v in n.outputs}

    assert types(second) == types(first) and types(first)["c"] is not None
    # another model is a miss: it is validated (here the stand-in checker's failure surfaces)
    with pytest.raises(ModelError, match="validated again"):
        loader.load_model(_conv_model(channels=5))


def test_a_model_the_checker_rejects_is_never_cached(cache: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], bogus=1)], "g",  # Relu has no attribute "bogus"
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                             ir_version=9).SerializeToString()
    for _ in range(2):  # rejected both times, with the checker's reason
        with pytest.raises(ModelError, match="checker"):
            loader.load_model(data)
    assert not list(cache.glob("*.onnx"))


def test_a_corrupt_cache_entry_is_validated_again(cache: Path) -> None:
    data = _conv_model()
    loader.load_model(data)
    (entry,) = cache.glob("*.onnx")
    entry.write_bytes(b"\x00garbage")
    graph = loader.load_model(data)
    assert [n.op_type for n in graph.nodes] == ["Conv", "Relu"]
    parsed = onnx.ModelProto()
    parsed.ParseFromString(entry.read_bytes())  # rewritten with the real model
    assert parsed.graph.node


def test_an_entry_that_parses_but_is_another_model_is_not_trusted(cache: Path) -> None:
    data = _conv_model()
    loader.load_model(data)
    (entry,) = cache.glob("*.onnx")
    whole = entry.read_bytes()
    other = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["z"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2])]), ir_version=9)
    entry.write_bytes(other.SerializeToString())  # valid protobuf, wrong model
    graph = loader.load_model(data)
    assert [n.op_type for n in graph.nodes] == ["Conv", "Relu"]
    assert entry.read_bytes() == whole  # validated again and stored again


def test_cache_switched_off(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WALLE_VALIDATION_CACHE", "0")
    loader.load_model(_conv_model())
    assert not cache.exists() or not list(cache.glob("*.onnx"))


F32 = dtypes.from_numpy(np.dtype(np.float32))


def _onnx_only(node: Node, opset: int, specs: list[TensorSpec | None]) -> list[TensorSpec] | None:
    """ONNX's own per-node inference (what infer_outputs did for every native op before)."""
    import walle_core.frontend.onnx.infer as infer

    real = infer.native_outputs
    infer.native_outputs = lambda *_a: None  # type: ignore[assignment]
    try:
        return infer_outputs(node, {"": opset}, specs, [None] * len(specs))
    finally:
        infer.native_outputs = real


CONV_CASES = [
    dict(pads=[1, 1, 1, 1]), dict(strides=[2, 2], pads=[3, 3, 3, 3]),
    dict(auto_pad="SAME_UPPER", strides=[2, 2]), dict(auto_pad="SAME_LOWER", strides=[3, 2]),
    dict(auto_pad="VALID", strides=[2, 1]), dict(dilations=[2, 2], pads=[2, 1, 0, 2]),
    dict(group=2, strides=[1, 2]),
]


@pytest.mark.parametrize("attrs", CONV_CASES)
@pytest.mark.parametrize("kernel", [(1, 1), (3, 3), (7, 5)])
def test_conv_shapes_match_onnx_inference(attrs: dict[str, Any], kernel: tuple[int, int]
                                          ) -> None:
    x = TensorSpec((1, 4, 17, 23), F32)
    w = TensorSpec((6, 4 // attrs.get("group", 1), *kernel), F32)
    node = Node("Conv", [], [object()], dict(attrs))  # type: ignore[list-item]
    ours = native_outputs(node, [x, w])
    assert ours is not None
    assert ours == _onnx_only(node, 17, [x, w])


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("ceil,auto,stride,pads", list(itertools.product(
    [0, 1], ["NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"], [1, 2, 3], [0, 1])))
def test_pool_shapes_match_onnx_inference(op: str, ceil: int, auto: str, stride: int,
                                          pads: int) -> None:
    x = TensorSpec((2, 3, 13, 10), F32)
    attrs: dict[str, Any] = {"kernel_shape": [3, 2], "strides": [stride, stride],
                             "ceil_mode": ceil, "auto_pad": auto}
    if auto == "NOTSET":
        attrs["pads"] = [pads, pads, pads, 0]
    node = Node(op, [], [object()], attrs)  # type: ignore[list-item]
    ours = native_outputs(node, [x])
    assert ours is not None
    assert ours == _onnx_only(node, 19, [x])


def test_global_pool_softmax_and_maxpool_indices() -> None:
    x = TensorSpec((2, 5, 7, 3), F32)
    gap = Node("GlobalAveragePool", [], [object()], {})  # type: ignore[list-item]
    assert native_outputs(gap, [x]) == [TensorSpec((2, 5, 1, 1), F32)]
    soft = Node("Softmax", [], [object()], {"axis": 1})  # type: ignore[list-item]
    assert native_outputs(soft, [x]) == [x]
    mp = Node("MaxPool", [], [object(), object()], {"kernel_shape": [2, 2]})  # type: ignore
    got = native_outputs(mp, [x])
    assert got is not None and got[1].dtype == dtypes.int64 and got[0].shape == (2, 5, 6, 2)
    # what it does not cover goes to ONNX
    ln = Node("LayerNormalization", [], [object()] * 3, {})  # type: ignore[list-item]
    assert native_outputs(ln, [x]) is None
