"""Large initializers are read from the file into arrays, not parsed by protobuf first
(``walle_core/frontend/onnx/weights.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from walle_core.frontend.onnx import weights
from walle_core.frontend.onnx.loader import load_model
from walle_core.ir.errors import ModelError

RNG = np.random.default_rng(7)


def _model(extra_inits: list[TensorProto] | None = None) -> onnx.ModelProto:
    w = RNG.standard_normal((64, 48)).astype(np.float32)  # 12 KB: cut
    b = RNG.standard_normal(48).astype(np.float32)  # 192 B: stays in the message
    table = RNG.integers(-5, 5, (1200,)).astype(np.int64)  # 9.6 KB: cut
    half = RNG.standard_normal((48, 48)).astype(np.float16)  # 4.6 KB: cut
    shape = np.array([1, 48], np.int64)
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["a"]),
        helper.make_node("Cast", ["half"], ["h32"], to=TensorProto.FLOAT),
        helper.make_node("MatMul", ["a", "h32"], ["y0"]),
        helper.make_node("Reshape", ["y0", "shape"], ["y"]),
        helper.make_node("ReduceSum", ["table"], ["t"], keepdims=0),
    ]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b"),
             numpy_helper.from_array(table, "table"), numpy_helper.from_array(half, "half"),
             numpy_helper.from_array(shape, "shape"), *(extra_inits or [])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 48]),
         helper.make_tensor_value_info("t", TensorProto.INT64, [])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9)


def _save(model: onnx.ModelProto, tmp_path: Path, name: str = "m.onnx") -> Path:
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def test_strip_cuts_only_large_raw_data_and_keeps_the_rest(tmp_path: Path) -> None:
    model = _model()
    path = _save(model, tmp_path)
    stripped = weights.strip(path)
    assert stripped is not None
    data, cuts = stripped
    assert len(data) < path.stat().st_size - 20_000
    inits = list(model.graph.initializer)
    assert sorted(inits[c.initializer].name for c in cuts) == ["half", "table", "w"]
    raw = path.read_bytes()
    for c in cuts:  # each cut points at exactly that tensor's raw data in the file
        assert raw[c.offset:c.offset + c.length] == inits[c.initializer].raw_data
    parsed = onnx.ModelProto()
    parsed.ParseFromString(data)
    expected = onnx.ModelProto()
    expected.CopyFrom(model)
    for c in cuts:
        expected.graph.initializer[c.initializer].ClearField("raw_data")
    assert parsed == expected


def test_loaded_constants_match_protobufs_decoding(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model()
    path = _save(model, tmp_path)
    from walle_core.runtime.session import Session

    x = {"x": RNG.standard_normal((1, 64)).astype(np.float32)}
    direct = Session(str(path), backend="reference").run(x)
    monkeypatch.setenv("WALLE_DIRECT_WEIGHTS", "0")
    parsed = Session(str(path), backend="reference").run(x)
    for name in ("y", "t"):
        assert np.array_equal(direct[name], parsed[name])
    w, b, table, half = (numpy_helper.to_array(t) for t in model.graph.initializer[:4])
    expected = (x["x"] @ w + b) @ half.astype(np.float32)
    assert np.allclose(direct["y"], expected, rtol=1e-4, atol=1e-4)
    assert direct["t"] == table.sum()


def test_read_arrays_are_aligned_owned_and_typed(tmp_path: Path) -> None:
    model = _model()
    path = _save(model, tmp_path)
    _, cuts = weights.strip(path)  # type: ignore[misc]
    inits = model.graph.initializer
    arrays = weights.read(path, [(inits[c.initializer].name, inits[c.initializer].data_type,
                                  list(inits[c.initializer].dims), c) for c in cuts], "m")
    for c in cuts:
        t = inits[c.initializer]
        a = arrays[t.name]
        expected = numpy_helper.to_array(t)
        assert a.dtype == expected.dtype and a.shape == expected.shape
        assert np.array_equal(a, expected)
        assert a.flags.aligned and a.flags.c_contiguous and a.ctypes.data % 16 == 0


def test_a_raw_data_size_that_disagrees_with_dims_is_a_model_error(tmp_path: Path) -> None:
    bad = TensorProto(name="bad", data_type=TensorProto.FLOAT, dims=[10, 10])
    bad.raw_data = np.zeros(2000, np.float32).tobytes()  # 2000 values for a 10x10 tensor
    model = _model([bad])
    path = _save(model, tmp_path)
    with pytest.raises(ModelError, match="bad.*cannot be decoded"):
        load_model(str(path))


def test_files_the_scanner_does_not_rewrite_fall_back_to_protobuf(tmp_path: Path) -> None:
    model = _model()
    raw = model.SerializeToString()
    # a truncated file: the scanner declines and the parser's error is the one reported
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(raw[: len(raw) - 5000])
    assert weights.strip(cut) is None
    with pytest.raises(ModelError, match="not a valid ONNX protobuf"):
        load_model(str(cut))
    # two graph fields (protobuf merges them): left to protobuf
    twice = tmp_path / "twice.onnx"
    twice.write_bytes(raw + bytes([7 << 3 | 2]) + weights._encode_varint(0))
    assert weights.strip(twice) is None
    # only small initializers: nothing to cut
    small = _model()
    del small.graph.initializer[:4]
    assert weights.strip(_save(small, tmp_path, "small.onnx")) is None
    # a bfloat16 tensor is left in the message (no numpy dtype for it)
    bf = TensorProto(name="bf", data_type=TensorProto.BFLOAT16, dims=[4000])
    bf.raw_data = bytes(8000)
    path = _save(_model([bf]), tmp_path, "bf.onnx")
    _, cuts = weights.strip(path)  # type: ignore[misc]
    assert "bf" not in {_model([bf]).graph.initializer[c.initializer].name for c in cuts}


def test_external_data_tensors_are_not_cut(tmp_path: Path) -> None:
    model = _model()
    onnx.save_model(model, str(tmp_path / "ext.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="ext.bin", size_threshold=1024)
    assert weights.strip(tmp_path / "ext.onnx") is None
    from walle_core.runtime.session import Session

    x = {"x": RNG.standard_normal((1, 64)).astype(np.float32)}
    got = Session(str(tmp_path / "ext.onnx"), backend="reference").run(x)
    ref = Session(_save(model, tmp_path).as_posix(), backend="reference").run(x)
    assert np.array_equal(got["y"], ref["y"])
