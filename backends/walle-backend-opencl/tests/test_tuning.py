"""Memory domain, honest supports(), measured variants cached per device, native Conv."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from harness import compare, out_spec, run, spec

from walle_core.ir.errors import WalleError
from walle_core.ir.primitives import (
    Elementwise,
    Kernel,
    Loop,
    MatMul,
    Raster,
    Reduce,
    Region,
    Step,
)
from walle_core.search.profile import CostProfile

RNG = np.random.default_rng(3)


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty tuning cache, every step tuned (no size threshold)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("WALLE_OPENCL_TUNE_MIN_US", "0")
    monkeypatch.setenv("WALLE_OPENCL_TUNE", "1")
    return tmp_path


def new_backend():  # type: ignore[no-untyped-def]
    from walle_backend_opencl import OpenCLBackend

    return OpenCLBackend(threads=2)


def algorithms(backend, prim, ins, out):  # type: ignore[no-untyped-def]
    specs = [None if a is None else spec(a) for a in ins]
    step = Step(prim, list(range(len(ins))), [len(ins)])
    return backend.algorithms(step, specs, [out], CostProfile("opencl", "test"))


def test_memory_domain_and_calibration_key_name_the_device(opencl) -> None:  # type: ignore[no-untyped-def]
    assert opencl.memory_domain.startswith("opencl:") and opencl.memory_domain != "host"
    assert opencl.rt.device.name.strip() in opencl.memory_domain
    assert opencl.rt.device_ident in opencl.calibration_key()


def test_supports_says_no_for_what_has_no_kernel(opencl) -> None:  # type: ignore[no-untyped-def]
    from walle_core.ir import dtypes
    from walle_core.ir.primitives import Cast

    assert opencl.supports(Kernel("Conv", "", {}, 13))
    assert not opencl.supports(Kernel("TopK", "", {}, 13))
    assert not opencl.supports(Loop(Region(0, 0, (0, 0, 1), 0, (0, 0, 1), (1, 1, 4)), 2,
                                    reduction="add"))
    assert not opencl.supports(Cast(dtypes.ALL["float16"]))
    assert opencl.supports(Cast(dtypes.ALL["float32"]))
    assert opencl.supports(MatMul(activation="relu"))
    assert opencl.supports(Reduce("sum", (0,)))
    overlap = Raster((Region(0, 0, (0, 0, 0), 0, (0, 0, 0), (1, 1, 4)),))  # writes [0] 4 times
    assert not opencl.supports(overlap)


def test_algorithms_declines_dtypes_without_kernels(opencl) -> None:  # type: ignore[no-untyped-def]
    x = RNG.standard_normal((4, 4)).astype(np.float16)
    with pytest.raises(WalleError):
        algorithms(opencl, Elementwise(("add", ("in", 0), ("in", 0))), [x],
                   out_spec((4, 4), "float16"))


CASES = [
    (MatMul(trans_b=True, activation="relu"),
     [RNG.standard_normal((70, 50)).astype(np.float32),
      RNG.standard_normal((90, 50)).astype(np.float32),
      RNG.standard_normal((90,)).astype(np.float32)], ((70, 90), "float32")),
    (Kernel("Conv", "", {"pads": [1, 1, 1, 1], "strides": [2, 2], "group": 2}, 13),
     [RNG.standard_normal((2, 4, 11, 9)).astype(np.float32),
      RNG.standard_normal((6, 2, 3, 3)).astype(np.float32),
      RNG.standard_normal((6,)).astype(np.float32)], ((2, 6, 6, 5), "float32")),
    (Elementwise(("mul", ("tanh", ("in", 0)), ("in", 1))),
     [RNG.standard_normal((3000,)).astype(np.float32),
      RNG.standard_normal((3000,)).astype(np.float32)], ((3000,), "float32")),
    (Reduce("sum", (1,)), [RNG.standard_normal((40, 300)).astype(np.float32)],
     ((40, 1), "float32")),
    (Raster((Region(0, 0, (0, 1, 40), 0, (0, 30, 1), (1, 40, 30)),)),
     [RNG.standard_normal((30, 40)).astype(np.float32)], ((40, 30), "float32")),
]


@pytest.mark.parametrize("prim,ins,out", CASES, ids=["matmul", "conv", "elementwise", "reduce",
                                                     "raster"])
def test_every_variant_matches_the_reference_and_is_measured_once(
        fresh_cache, prim, ins, out) -> None:  # type: ignore[no-untyped-def]
    from harness import REFERENCE

    first = new_backend()
    algs = algorithms(first, prim, ins, out_spec(*out))
    assert len(algs) > 1 and all(a.cost > 0 and "measured" in a.note for a in algs)
    assert first.tuner.measured == len(algs)
    want = run(REFERENCE, prim, ins, out_spec(*out))
    for alg in algs:  # each variant compiles and gives the reference's result
        got = run_with(first, prim, ins, out_spec(*out), alg)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    second = new_backend()  # a new instance reads the per-device file: nothing re-measured
    again = algorithms(second, prim, ins, out_spec(*out))
    assert second.tuner.measured == 0
    assert [(a.name, a.cost) for a in again] == [(a.name, a.cost) for a in algs]
    assert list((fresh_cache / "walle" / "opencl").glob("tuning-*.json"))


def run_with(backend, prim, ins, out, alg):  # type: ignore[no-untyped-def]
    specs = [spec(a) for a in ins]
    arena = backend.allocate(sum(s.nbytes + 64 for s in specs) + out.nbytes + 64)
    bufs, offset = [], 8
    for a, s in zip(ins, specs, strict=True):
        bufs.append(backend.view(arena, offset, s))
        backend.upload(a, bufs[-1])
        offset += s.nbytes + 64
    out_buf = backend.view(arena, offset, out)
    backend.upload(np.zeros(out.shape, out.dtype.np), out_buf)
    step = Step(prim, list(range(len(ins))), [len(ins)])
    backend.compile(step, specs, [out], algorithm=alg)(bufs, [out_buf])
    backend.sync()
    return backend.download(out_buf)


SECOND_PROCESS = """
import numpy as np
from walle_backend_opencl import OpenCLBackend
from walle_core.ir import dtypes
from walle_core.ir.primitives import MatMul, Step, TensorSpec
from walle_core.search.profile import CostProfile
f = dtypes.ALL["float32"]
b = OpenCLBackend(threads=2)
algs = b.algorithms(Step(MatMul(), [0, 1], [2]), [TensorSpec((64, 48), f),
                    TensorSpec((48, 80), f)], [TensorSpec((64, 80), f)], CostProfile("o", "k"))
print(b.tuner.measured, min(algs, key=lambda a: a.cost).name)
"""


def test_a_second_process_measures_nothing(opencl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path), WALLE_OPENCL_TUNE_MIN_US="0")
    runs = [subprocess.run([sys.executable, "-c", SECOND_PROCESS], env=env,
                           capture_output=True, text=True, timeout=300) for _ in range(2)]
    outs = [r.stdout.split() for r in runs]
    assert all(len(o) == 2 for o in outs), [r.stderr[-800:] for r in runs]
    assert int(outs[0][0]) > 1 and outs[1][0] == "0" and outs[0][1] == outs[1][1]


def _conv_model() -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)

    def w(name: str, *shape: int) -> object:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("TopK", ["r1", "k"], ["v", "i"], axis=-1),  # no device kernel
        helper.make_node("Flatten", ["v"], ["f"]),
        helper.make_node("Gemm", ["f", "wf"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "hybrid", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        [w("w1", 8, 3, 3, 3), w("b1", 8), w("wf", 5, 8 * 12 * 4),
         numpy_helper.from_array(np.array([4], np.int64), "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def test_session_places_unsupported_ops_on_the_host_with_transfers(
        opencl, fresh_cache) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("onnx")
    from walle_core import Session

    model = _conv_model()
    session = Session(model, backend="opencl")
    x = np.random.default_rng(0).standard_normal((1, 3, 12, 12)).astype(np.float32)
    got = session.run({"x": x})["y"]
    want = Session(model, backend="reference").run({"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    exe = session.executable({"x": spec(x)})
    where = {op.step.prim.op_type if op.step.prim.kind == "Kernel" else op.step.prim.kind:
             op.backend.name for op in exe.ops if op.index >= 0}
    assert where["TopK"] == "reference" and where["Conv"] == "opencl"
    assert where["MatMul"] == "opencl" and exe.transfers >= 2  # to the host and back
    # tuned steps: the search took the fastest measured variant
    for op in exe.ops:
        if op.index < 0 or op.backend.name != "opencl":
            continue
        costed = [a for b, a in exe.placement.candidates[op.index] if b == "opencl"]
        assert op.algorithm.cost == min(a.cost for a in costed)


CONVS = [
    ({"pads": [1, 1, 1, 1]}, (1, 3, 9, 9), (4, 3, 3, 3), True),
    ({"strides": [2, 1], "dilations": [1, 2], "pads": [0, 2, 1, 0]}, (2, 5, 10, 11),
     (7, 5, 3, 2), True),
    ({"group": 3, "auto_pad": "SAME_UPPER", "strides": [2, 2]}, (1, 6, 7, 8), (9, 2, 3, 3),
     False),
    ({"group": 4}, (1, 4, 6, 6), (4, 1, 3, 3), True),  # depthwise
    ({"pads": [2, 1], "strides": [3]}, (2, 3, 17), (5, 3, 4), True),  # 1-D
    ({}, (1, 40, 5, 5), (70, 40, 1, 1), True),  # pointwise, K and M over one tile
]


@pytest.mark.parametrize("attrs,xs,ws,bias", CONVS)
def test_native_conv_matches_the_reference(opencl, attrs, xs, ws, bias) -> None:  # type: ignore[no-untyped-def]
    from walle_backend_opencl import conv

    x = RNG.standard_normal(xs).astype(np.float32)
    w = RNG.standard_normal(ws).astype(np.float32)
    b = RNG.standard_normal((ws[0],)).astype(np.float32) if bias else None
    prim = Kernel("Conv", "", {"kernel_shape": list(ws[2:]), **attrs}, 13)
    geo = conv.geometry(prim, spec(x), spec(w))
    assert geo is not None
    shape = (xs[0], ws[0], geo["OH"], geo["OW"]) if len(xs) == 4 else (xs[0], ws[0], geo["OW"])
    before = opencl.kernel_steps
    compare(opencl, prim, [x, w, b] if bias else [x, w], out_spec(shape, "float32"),
            rtol=1e-4, atol=1e-4)
    assert opencl.kernel_steps == before + 1  # on the device, not the host fallback
