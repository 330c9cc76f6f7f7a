"""Locate (or generate) the ONNX backend node test suite that the kernels are measured against.

Some onnx wheels ship ``onnx/backend/test/data/node``; others ship only the case scripts under
``onnx/backend/test/case/node``. In that case the data is generated once from those scripts
(the same way ``onnx``'s own ``generate-data`` tool does) into a cache directory keyed by the
onnx version. ``WALLE_ONNX_NODE_DATA`` overrides the location.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper


def _installed_dir() -> Path:
    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "node"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "walle" / f"onnx-node-{onnx.__version__}"


def node_data_dir(generate: bool = True) -> Path | None:
    """The directory holding ``test_*/model.onnx`` cases, generating it if needed."""
    env = os.environ.get("WALLE_ONNX_NODE_DATA")
    if env:
        return Path(env)
    installed = _installed_dir()
    if installed.is_dir() and any(installed.glob("test_*/model.onnx")):
        return installed
    cached = cache_dir()
    if (cached / ".complete").exists():
        return cached
    if not generate:
        return None
    generate_node_data(cached)
    return cached


def _serialize(value: Any, type_proto: onnx.TypeProto, name: str) -> bytes:
    if type_proto.HasField("sequence_type"):
        return numpy_helper.from_list(value, name).SerializeToString()
    if type_proto.HasField("optional_type"):
        return numpy_helper.from_optional(value, name).SerializeToString()
    if type_proto.HasField("map_type"):
        return numpy_helper.from_dict(value, name).SerializeToString()
    if isinstance(value, onnx.TensorProto):
        return value.SerializeToString()
    return numpy_helper.from_array(np.asarray(value), name).SerializeToString()


def generate_node_data(out: Path) -> None:
    """Write every node case from onnx's case scripts into ``out`` (model + one data set)."""
    from onnx.backend.test.case import node as node_cases

    out.mkdir(parents=True, exist_ok=True)
    for case in node_cases.collect_testcases():
        assert case.model is not None and case.data_sets
        case_dir = out / case.name
        data_dir = case_dir / "test_data_set_0"
        data_dir.mkdir(parents=True, exist_ok=True)
        (case_dir / "model.onnx").write_bytes(case.model.SerializeToString())
        inputs, outputs = case.data_sets[0]
        graph = case.model.graph
        for j, value in enumerate(inputs):
            vi = graph.input[j]
            (data_dir / f"input_{j}.pb").write_bytes(_serialize(value, vi.type, vi.name))
        for j, value in enumerate(outputs):
            vi = graph.output[j]
            (data_dir / f"output_{j}.pb").write_bytes(_serialize(value, vi.type, vi.name))
    (out / ".complete").write_text(onnx.__version__)


if __name__ == "__main__":
    print(node_data_dir())
