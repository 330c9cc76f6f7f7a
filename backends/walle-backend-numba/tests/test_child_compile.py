"""A session's new kernels are compiled in a child process (``Measurements.warm``): the
session's own process only loads them from numba's disk cache, so the compiler's memory never
enters it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from walle_backend_numba.checking import ENGINE

pytestmark = pytest.mark.skipif(not ENGINE, reason="the tensor engine is not in this core")
onnx = pytest.importorskip("onnx")


def _model() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    # an odd constant: its fused kernel's source exists in no other test, so no process has
    # compiled it before
    scale = numpy_helper.from_array(np.array(0.7351962, np.float32), "scale")
    nodes = [helper.make_node("Mul", ["x", "scale"], ["a"]),
             helper.make_node("Tanh", ["a"], ["b"]),
             helper.make_node("Add", ["b", "x"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 512])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 512])], [scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              ir_version=9)
    return bytes(model.SerializeToString())


def test_new_kernels_compile_in_a_child_process(tmp_path: Path, monkeypatch: Any) -> None:
    from numba.core import event
    from walle_backend_numba import NumbaBackend

    from walle_core.reference_backend import ReferenceBackend
    from walle_core.runtime.session import Session
    from walle_core.search.profile import cache_path

    monkeypatch.delenv("WALLE_CALIBRATE_IN_PROCESS", raising=False)
    numba_cache = tmp_path / "numba"
    monkeypatch.setenv("WALLE_NUMBA_CACHE", str(numba_cache))
    # this machine's calibration, but no record of any step compiled or measured
    profiles = [cache_path(b.calibration_key(), b.name)
                for b in (NumbaBackend(threads=2), ReferenceBackend(threads=2))]
    monkeypatch.setenv("WALLE_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache" / "calibration").mkdir(parents=True)
    for path in profiles:
        if path.exists():
            shutil.copy(path, tmp_path / "cache" / "calibration")

    compiled_here: list[str] = []

    class Listener(event.Listener):
        def on_start(self, ev: Any) -> None:
            pass

        def on_end(self, ev: Any) -> None:
            fn = getattr(ev.data.get("dispatcher"), "py_func", None)
            compiled_here.append(getattr(fn, "__module__", "") or "")

    x = np.random.default_rng(0).standard_normal((64, 512)).astype(np.float32)
    with event.install_listener("numba:compile", Listener()):
        session = Session(_model(), backend="numba", threads=2)
        (got,) = session.run({"x": x}).values()
    np.testing.assert_allclose(got, np.tanh(x * np.float32(0.7351962)) + x, rtol=1e-5,
                               atol=1e-6)
    generated = list(numba_cache.glob("walle_gen_*.py"))
    assert generated  # the session's fused kernel was generated ...
    assert list(numba_cache.glob("__pycache__/walle_gen_*.nbi"))  # ... and compiled, cached
    assert not [m for m in compiled_here if m.startswith("walle_gen_")]  # but not here
