"""Inputs for a benchmark run: the model's own ``test_data_set_0`` if it has one, else random.

Every runner gets byte-identical feeds (fixed seed), so their outputs can be compared. Symbolic
dims: the first (batch) becomes 1, any other becomes ``seq_len`` (128, a typical sequence).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEFAULT_SEQ_LEN = 128


def graph_inputs(model_path: Path) -> list[Any]:
    """The model's real inputs (graph inputs that are not initializers), as ValueInfoProtos."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    inits = {init.name for init in model.graph.initializer}
    return [vi for vi in model.graph.input if vi.name not in inits]


def graph_outputs(model_path: Path) -> list[str]:
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    return [vi.name for vi in model.graph.output]


def shipped_feeds(model_path: Path) -> dict[str, Any] | None:
    """Feeds from ``test_data_set_0/input_*.pb`` beside the model (ONNX model-zoo layout)."""
    import onnx
    from onnx import numpy_helper

    data_dir = model_path.parent / "test_data_set_0"
    files = sorted(data_dir.glob("input_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
    if not files:
        return None
    names = [vi.name for vi in graph_inputs(model_path)]
    feeds: dict[str, Any] = {}
    for index, file in enumerate(files):
        tensor = onnx.TensorProto()
        tensor.ParseFromString(file.read_bytes())
        name = tensor.name or (names[index] if index < len(names) else f"input_{index}")
        feeds[name] = numpy_helper.to_array(tensor)
    return feeds


def random_feeds(model_path: Path, seed: int = 0, seq_len: int = DEFAULT_SEQ_LEN) -> dict[str, Any]:
    """Seeded random feeds from the input metadata: N(0,1) floats, ints/bools in {0, 1}."""
    import numpy as np
    from onnx import helper

    rng = np.random.default_rng(seed)
    feeds: dict[str, Any] = {}
    for vi in graph_inputs(model_path):
        ttype = vi.type.tensor_type
        shape = []
        for axis, dim in enumerate(ttype.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                shape.append(dim.dim_value)
            else:
                shape.append(1 if axis == 0 else seq_len)
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(ttype.elem_type))
        if dtype.kind == "f":
            feeds[vi.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[vi.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[vi.name] = rng.integers(0, 2, shape).astype(dtype)
    return feeds


def load_feeds(model_path: Path, seed: int = 0) -> dict[str, Any]:
    """Shipped test data when present, otherwise seeded random inputs."""
    return shipped_feeds(model_path) or random_feeds(model_path, seed)
