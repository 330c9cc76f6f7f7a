"""The semi-auto search: exact min-cut placement, transfer costs, hybrid execution, caching."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from walle_core import Session
from walle_core.backend import Algorithm
from walle_core.ir.primitives import Elementwise, Primitive, Step, TensorSpec
from walle_core.reference_backend import ReferenceBackend
from walle_core.runtime.executor import Executable, Transfer
from walle_core.search import HOST, _DataGraph, search
from walle_core.search.mincut import MinCut
from walle_core.search.profile import CostProfile, calibrate, get_profile


class DevBuf:
    """A 'device' buffer: host numpy arrays are not accepted where these are expected."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array


class FakeDevice(ReferenceBackend):
    """A second memory domain built on the reference kernels: buffers are wrapped, so a step
    handed a host array (a missing transfer) fails loudly."""

    name = "fakedev"  # type: ignore[assignment]
    memory_domain = "fake:0"

    def supports(self, primitive: Primitive) -> bool:
        return primitive.kind in ("MatMul", "Elementwise")

    def view(self, arena: Any, offset: int, spec: TensorSpec) -> DevBuf:
        return DevBuf(super().view(arena, offset, spec))

    def constant(self, array: np.ndarray) -> DevBuf:
        return DevBuf(np.array(array, copy=True))

    def upload(self, array: np.ndarray, buffer: DevBuf) -> None:
        np.copyto(buffer.array, np.asarray(array).reshape(buffer.array.shape), casting="unsafe")

    def download(self, buffer: DevBuf) -> np.ndarray:
        return np.array(buffer.array, copy=True)

    def compile(self, step: Step, inputs: Sequence[TensorSpec | None],
                outputs: Sequence[TensorSpec], algorithm: Algorithm | None = None) -> Any:
        fn = super().compile(step, inputs, outputs)

        def run(ins: Sequence[Any], outs: Sequence[Any]) -> None:
            fn([None if b is None else b.array for b in ins], [b.array for b in outs])

        return run


def mlp(hidden: int = 256) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w1 = helper.make_tensor("w1", TensorProto.FLOAT, [64, hidden],
                            rng.standard_normal((64, hidden)).astype(np.float32).ravel())
    w2 = helper.make_tensor("w2", TensorProto.FLOAT, [hidden, 10],
                            rng.standard_normal((hidden, 10)).astype(np.float32).ravel())
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Tanh", ["h"], ["t"]),
        helper.make_node("MatMul", ["t", "w2"], ["y0"]),
        helper.make_node("Transpose", ["y0"], ["y1"], perm=[1, 0]),
        helper.make_node("Transpose", ["y1"], ["y"], perm=[1, 0]),
    ]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [32, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [32, 10])], [w1, w2])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def profiles(upload_bytes_s: float) -> dict[str, CostProfile]:
    host = CostProfile("reference", "h", launch_s=1e-6, gemm_small_flops_s=1e9,
                       gemm_flops_s=1e9, copy_bytes_s=1e9, ew_bytes_s=1e9)
    dev = CostProfile("fakedev", "d", launch_s=1e-6, gemm_small_flops_s=1e12,
                      gemm_flops_s=1e12, copy_bytes_s=1e10, ew_bytes_s=1e8,
                      upload_bytes_s=upload_bytes_s, download_bytes_s=upload_bytes_s,
                      transfer_latency_s=1e-6)
    return {"reference": host, "fakedev": dev}


def planned(model: onnx.ModelProto) -> Any:
    return Session(model, backend="reference").plan_for({"x": TensorSpec((32, 64), _f32())})


def _f32() -> Any:
    from walle_core.ir import dtypes

    return dtypes.from_numpy(np.float32)


def place(program: Any, profs: dict[str, CostProfile], backends: list[Any]) -> Any:
    return search(program.steps, program.slots, list(program.inputs.values()),
                  [s for _, s in program.outputs], program.builder.consts, program.aliases,
                  backends, profs)


def test_min_cut_equals_brute_force_on_random_energies() -> None:
    rnd = random.Random(7)
    for _ in range(200):
        n = rnd.randint(1, 7)
        unary = [(rnd.random() * 1e-5, rnd.random() * 1e-5) for _ in range(n)]
        edges = [(rnd.randrange(n), rnd.randrange(n), rnd.random() * 1e-5)
                 for _ in range(rnd.randint(0, 10))]
        edges = [e for e in edges if e[0] != e[1]]
        cut = MinCut(n)
        for i, (c0, c1) in enumerate(unary):
            cut.unary(i, c0, c1)
        for u, v, w in edges:
            cut.edge(u, v, w)
        side = [int(s) for s in cut.solve()]

        best = min(_energy(x, unary, edges) for x in itertools.product((0, 1), repeat=n))
        assert _energy(side, unary, edges) == pytest.approx(best, rel=1e-9, abs=1e-15)


def _energy(x: Sequence[int], unary: list[tuple[float, float]],
            edges: list[tuple[int, int, float]]) -> float:
    return sum(unary[i][x[i]] for i in range(len(x))) + sum(
        w for u, v, w in edges if x[u] == 0 and x[v] == 1)


@pytest.mark.parametrize("upload", [1e12, 1e5])
def test_placement_is_the_least_total_cost(upload: float) -> None:
    program = planned(mlp())
    host, dev = ReferenceBackend(), FakeDevice()
    profs = profiles(upload)
    placement = place(program, profs, [host, dev])
    graph = _DataGraph(program.steps, program.slots, list(program.inputs.values()),
                       [s for _, s in program.outputs], program.builder.consts, program.aliases)
    per_step = []
    for opts in placement.candidates:
        per_step.append({("fake:0" if b == "fakedev" else HOST): a.cost for b, a in opts})

    def total(labels: Sequence[str]) -> float:
        return sum(per_step[i][d] for i, d in enumerate(labels)) + graph.transfer_total(
            list(labels), lambda n, s, d: (profs["fakedev"].transfer(n, d != HOST)))[0]

    options = [sorted(p) for p in per_step]
    best = min(total(labels) for labels in itertools.product(*options))
    assert placement.estimated_seconds == pytest.approx(best, rel=1e-9)
    on_device = [b.name for b in placement.backends].count("fakedev")
    if upload > 1e9:  # cheap transfers: the fast GEMMs move to the device
        assert on_device >= 2 and placement.transfers >= 2
    else:  # transfers dearer than any saving: everything stays on the host
        assert on_device == 0 and placement.transfers == 0


def test_hybrid_executable_inserts_transfers_and_matches_reference() -> None:
    program = planned(mlp())
    placement = place(program, profiles(1e12), [ReferenceBackend(), FakeDevice()])
    exe = Executable(program, placement)
    kinds = [op.step.prim for op in exe.ops]
    assert any(isinstance(p, Transfer) for p in kinds)
    # the search also counts feeds uploaded straight into the device and outputs read back
    boundary = sum(exe.home[program.root(s)] != HOST for s in program.inputs.values()) + sum(
        exe.home[program.root(s)] != HOST for _, s in program.outputs)
    assert exe.transfers + boundary == placement.transfers
    x = np.random.default_rng(1).standard_normal((32, 64)).astype(np.float32)
    want = Session(mlp(), backend="reference").run({"x": x})["y"]
    got = exe.run({"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert len(exe.profile({"x": x}, runs=2)) == len(exe.ops)


def test_profile_is_measured_once_and_cached(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("WALLE_CACHE_DIR", str(tmp_path))
    backend = ReferenceBackend()
    first = get_profile(backend)
    assert first.gemm_flops_s > 0 and first.launch_s > 0 and first.copy_bytes_s > 0
    files = list((tmp_path / "calibration").glob("reference-*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["key"] == first.key

    def boom(*_a: Any, **_k: Any) -> CostProfile:
        raise AssertionError("re-measured despite a warm cache")

    monkeypatch.setattr("walle_core.search.profile.calibrate", boom)
    again = get_profile(ReferenceBackend())
    assert again.to_json() == first.to_json()
    # another thread setting is another key: measured again
    with pytest.raises(AssertionError, match="re-measured"):
        get_profile(ReferenceBackend(threads=7))


def test_calibration_runs_in_a_child_process(tmp_path: Path, monkeypatch: Any) -> None:
    """A session calibrates a backend in a child process and reads the profile it saved: the
    kernels calibration loads stay out of the session's memory. A backend class a fresh
    interpreter cannot import is calibrated here."""
    from walle_core.search import profile as prof

    monkeypatch.setenv("WALLE_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("WALLE_CALIBRATE_IN_PROCESS", raising=False)
    monkeypatch.setattr(prof, "_LOADED", {})

    def boom(*_a: Any, **_k: Any) -> CostProfile:
        raise AssertionError("calibrated in this process")

    monkeypatch.setattr(prof, "calibrate", boom)
    made = get_profile(ReferenceBackend(threads=1))
    assert made.gemm_flops_s > 0 and made.key == ReferenceBackend(threads=1).calibration_key()
    assert list((tmp_path / "calibration").glob("reference-*.json"))

    class Local(ReferenceBackend):
        pass

    with pytest.raises(AssertionError, match="in this process"):
        get_profile(Local(threads=3))


def test_calibration_rates_are_plausible() -> None:
    p = calibrate(ReferenceBackend())
    big = 2 * 256**3
    # a 256^3 GEMM at the measured rate takes between a microsecond and a second
    assert 1e-6 < big / p.gemm_flops_s < 1.0
    assert p.upload_bytes_s == float("inf")  # host backends never pay for transfers


def test_session_searches_named_backends_and_explain_reports_it() -> None:
    from walle_core.runtime.explain import explain_session

    session = Session(mlp(), backend="reference")
    report = explain_session(session, measure_runs=2)
    assert report["candidates"] == ["reference"] and report["fallback"] == []
    assert report["search"]["search_seconds"] < 0.5
    assert report["search"]["transfers"] == 0
    rows = report["steps"]
    assert rows and all(r["backend"] == "reference" for r in rows)
    assert all(r["estimated_us"] > 0 and r["measured_us"] > 0 for r in rows)


def test_unknown_backend_in_a_list_is_a_clear_error() -> None:
    from walle_core.runtime.backends import BackendError

    with pytest.raises(BackendError, match="no backend named 'nope'"):
        Session(mlp(), backend="reference,nope")


def test_close_calls_are_measured_once_per_machine(tmp_path: Path) -> None:
    from walle_core.search.measure import Measurements

    run, _ = _close_call_search()
    first = Measurements(tmp_path / "m.json", min_seconds=0.0)
    placement = run(first)
    assert first.measured >= 2  # both sides of at least one step
    measured = [a for opts in placement.candidates for _, a in opts
                if a.note.startswith("measured")]
    assert measured and all(a.cost > 0 for a in measured)
    again = Measurements(tmp_path / "m.json", min_seconds=0.0)
    run(again)
    assert again.measured == 0 and again.reused == first.measured


def test_close_calls_are_timed_in_a_child_process(tmp_path: Path, monkeypatch: Any) -> None:
    """Close calls are timed in a child process, which saves the table the session then reads:
    the kernels and random operands of every candidate stay out of the session's memory. A
    child that dies leaves the estimates (and the session) as they were; a backend class a
    fresh interpreter cannot import is timed here."""
    import subprocess
    import sys

    from walle_core.search import measure as meas

    monkeypatch.delenv("WALLE_CALIBRATE_IN_PROCESS", raising=False)
    # the child imports this module's FakeDevice as pytest did: from this folder
    here = Path(sys.modules[FakeDevice.__module__].__file__ or "").parent
    monkeypatch.setenv("PYTHONPATH", f"{here}:{__import__('os').environ.get('PYTHONPATH', '')}")
    timed_here: list[str] = []
    real_time = meas.Measurements._time

    def spy(self: Any, backend: Any, *a: Any, **k: Any) -> Any:
        timed_here.append(type(backend).__name__)
        return real_time(self, backend, *a, **k)

    monkeypatch.setattr(meas.Measurements, "_time", spy)
    run, _ = _close_call_search()
    path = tmp_path / "m.json"
    first = meas.Measurements(path, min_seconds=0.0)
    placement = run(first)
    assert timed_here == []  # nothing timed in this process ...
    assert first.measured >= 2  # ... but in the child, both sides of at least one step
    measured = [a for opts in placement.candidates for _, a in opts
                if a.note.startswith("measured")]
    assert measured and all(a.cost > 0 for a in measured)
    assert sum(len(json.loads(f.read_text())) for f in tmp_path.glob("m-*.json")) == \
        first.measured

    # every figure on disk now: no child at all
    def no_child(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("a child process was started")

    monkeypatch.setattr(subprocess, "run", no_child)
    again = meas.Measurements(path, min_seconds=0.0)
    run(again)
    assert again.measured == 0 and again.reused == first.measured
    monkeypatch.undo()

    # a child that fails: estimates kept, nothing timed here
    monkeypatch.delenv("WALLE_CALIBRATE_IN_PROCESS", raising=False)
    monkeypatch.setattr(meas.Measurements, "_time", spy)
    monkeypatch.setattr(sys, "executable", "/bin/false")
    dead = meas.Measurements(tmp_path / "dead.json", min_seconds=0.0)
    placement = run(dead)
    assert dead.measured == 0 and timed_here == []
    assert not any(a.note.startswith("measured") for opts in placement.candidates
                   for _, a in opts)


class JitDevice(ReferenceBackend):
    """A host backend that says it compiles kernels into a disk cache (as numba does); each
    compile is logged to the file ``$WALLE_TEST_COMPILE_LOG`` names, with the process id."""

    jit_cache = True

    def compile(self, step: Step, inputs: Sequence[TensorSpec | None],
                outputs: Sequence[TensorSpec], algorithm: Any = None) -> Any:
        import os

        log = os.environ.get("WALLE_TEST_COMPILE_LOG")
        if log:
            with open(log, "a") as f:
                f.write(f"{os.getpid()} {step.prim.kind}\n")
        return super().compile(step, inputs, outputs, algorithm)


def test_new_steps_are_compiled_in_a_child_process_first(tmp_path: Path,
                                                         monkeypatch: Any) -> None:
    """A plan's steps on a backend with a JIT disk cache are run once in a child process before
    the session compiles them (their kernels then only load here), once per machine and
    shapes; steps of other backends are not; a child that fails leaves compiling to the
    session, and nothing is recorded."""
    import os
    import subprocess
    import sys

    from walle_core.search import measure as meas

    monkeypatch.delenv("WALLE_CALIBRATE_IN_PROCESS", raising=False)
    here = Path(sys.modules[JitDevice.__module__].__file__ or "").parent
    monkeypatch.setenv("PYTHONPATH", f"{here}:{os.environ.get('PYTHONPATH', '')}")
    log = tmp_path / "compiled.txt"
    monkeypatch.setenv("WALLE_TEST_COMPILE_LOG", str(log))
    program = planned(mlp(hidden=64))
    jit, plain = JitDevice(), ReferenceBackend()
    steps, n = program.steps, len(program.steps)
    algs = [Algorithm("numpy", 1e-5)] * n
    on_jit = [jit if i % 2 == 0 else plain for i in range(n)]
    table = meas.Measurements(tmp_path / "m.json")
    ran = table.warm(steps, program.slots, on_jit, algs, program.builder.consts)
    lines = log.read_text().split()
    pids = set(lines[0::2])
    assert ran == len(range(0, n, 2)) and len(lines) // 2 == ran  # the JIT steps only ...
    assert str(os.getpid()) not in pids  # ... in another process
    warmed = [k for f in tmp_path.glob("m-*.json") for k in json.loads(f.read_text())]
    assert len(warmed) == ran and all(k.startswith("warm:") for k in warmed)

    def no_child(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("a child process was started")

    monkeypatch.setattr(subprocess, "run", no_child)
    assert meas.Measurements(tmp_path / "m.json").warm(
        steps, program.slots, on_jit, algs, program.builder.consts) == 0  # recorded
    monkeypatch.undo()

    monkeypatch.delenv("WALLE_CALIBRATE_IN_PROCESS", raising=False)
    monkeypatch.setattr(sys, "executable", "/bin/false")
    failed = meas.Measurements(tmp_path / "other.json")
    assert failed.warm(steps, program.slots, [jit] * n, algs, program.builder.consts) == 0
    assert not list(tmp_path.glob("other-*.json"))  # nothing recorded: the next one tries


def test_a_step_half_measured_keeps_its_estimates(tmp_path: Path) -> None:
    """Like against like: where the budget ran out before every close candidate of a step was
    measured, none of its measurements replaces an estimate this session (a measured 44 us
    against an estimated 83 once put ResNet-18's FC on numpy, 298 us in the model against
    16 us on the pool); the next session measures the rest and compares figures."""
    from walle_core.search import measure as meas

    run, _ = _close_call_search()
    path = tmp_path / "m.json"
    full = meas.Measurements(path, min_seconds=0.0)
    run(full)  # every close call measured and stored
    shard_file = full.shard_path(next(iter(full._tables)))
    table = json.loads(shard_file.read_text())
    del table[sorted(table)[0]]  # one candidate's figure is missing now ...
    shard_file.write_text(json.dumps(table))
    stingy = meas.Measurements(path, min_seconds=0.0, budget_s=-1.0)  # ... and no budget
    placement = run(stingy)
    assert stingy.measured == 0 and stingy.reused == full.measured - 1
    per_step = [[a.note.startswith("measured") for _, a in opts] for opts in
                placement.candidates if len(opts) > 1]
    assert all(all(flags) or not any(flags) for flags in per_step)  # never a mix
    assert any(not any(flags) for flags in per_step)  # the step missing one figure
    assert any(all(flags) for flags in per_step)  # the others use theirs


def _close_call_search() -> tuple[Any, Any]:
    """(run, host): ``run(measure)`` searches a 512-wide MLP over the reference backend and a
    fake device with the same rates, so every step is a close call."""
    program = planned(mlp(hidden=512))
    host, dev = ReferenceBackend(), FakeDevice()
    profs = profiles(1e12)
    profs["fakedev"] = CostProfile("fakedev", "d2", **{
        k: v for k, v in profs["reference"].to_json().items()
        if k not in ("version", "backend", "key")})

    def run(measure: Any) -> Any:
        return search(program.steps, program.slots, list(program.inputs.values()),
                      [s for _, s in program.outputs], program.builder.consts,
                      program.aliases, [host, dev], profs, measure=measure)

    return run, host


def test_busy_machine_profile_is_measured_again_when_quieter(tmp_path: Path,
                                                             monkeypatch: Any) -> None:
    """A calibration taken on a busy machine is provisional: a later session that finds the
    machine quieter measures again and keeps the best of each rate; a quiet one is final."""
    from walle_core.search import profile as prof

    monkeypatch.setenv("WALLE_CACHE_DIR", str(tmp_path))
    load = [1.6]
    monkeypatch.setattr(prof, "machine_load", lambda: load[0])
    # the CPU pressure check of each timing is the governor's business, not this test's
    monkeypatch.setattr("walle_core.runtime.governor.contended", lambda *_a, **_k: False)
    real = prof.calibrate
    calls: list[float] = []

    def slow_then_fast(backend: Any, progress: Any = None) -> CostProfile:
        p = real(backend, progress)
        calls.append(load[0])
        if len(calls) == 1:  # what a busy machine measures: everything 10x slower
            p.launch_s *= 10
            p.gemm_flops_s /= 10
            p.extra = {"only_busy": 1.0}
        return p

    monkeypatch.setattr(prof, "calibrate", slow_then_fast)
    busy = prof.get_profile(ReferenceBackend())
    assert busy.load == pytest.approx(1.6) and len(calls) == 1
    prof._LOADED.clear()
    assert prof.get_profile(ReferenceBackend()).to_json() == busy.to_json()  # still busy
    assert len(calls) == 1
    load[0] = 0.3
    prof._LOADED.clear()
    merged = prof.get_profile(ReferenceBackend())
    assert len(calls) == 2 and merged.samples == 2 and merged.load == pytest.approx(0.3)
    assert merged.launch_s < busy.launch_s and merged.gemm_flops_s > busy.gemm_flops_s
    assert merged.extra["only_busy"] == 1.0  # a figure only one side has is kept
    prof._LOADED.clear()
    assert prof.get_profile(ReferenceBackend()).to_json() == merged.to_json()  # now final
    assert len(calls) == 2


def test_close_call_timed_on_a_busy_machine_is_timed_again(tmp_path: Path,
                                                           monkeypatch: Any) -> None:
    from walle_core.search import measure as meas

    run, _ = _close_call_search()
    load = [2.0]
    monkeypatch.setattr(meas, "machine_load", lambda: load[0])
    monkeypatch.setattr("walle_core.search.profile.machine_load", lambda: load[0])

    first = meas.Measurements(tmp_path / "m.json", min_seconds=0.0)
    run(first)
    stored = _stored(tmp_path)
    assert first.measured >= 2 and all(v[1] == 2.0 and v[2] == 1 for v in stored.values())
    busy_again = meas.Measurements(tmp_path / "m.json", min_seconds=0.0)
    run(busy_again)
    assert busy_again.measured == 0  # no quieter: reused
    load[0] = 0.2
    quiet = meas.Measurements(tmp_path / "m.json", min_seconds=0.0)
    run(quiet)
    assert quiet.measured == first.measured
    after = _stored(tmp_path)
    assert all(after[k][0] <= stored[k][0] and after[k][2] == 2 for k in stored)


def _stored(folder: Path) -> dict[str, Any]:
    """Every backend's measured entries (one file per calibration key), merged."""
    merged: dict[str, Any] = {}
    for path in sorted(folder.glob("m-*.json")):
        merged.update(json.loads(path.read_text()))
    return merged


def test_calibration_on_a_contended_cpu_is_provisional(monkeypatch: Any) -> None:
    """Timings taken while the CPU is contended run BLAS on one thread (as the session will
    then); such a profile is marked busy so a quieter session measures it again."""
    from walle_core.search import profile as prof

    monkeypatch.setattr(prof, "machine_load", lambda: 0.1)
    monkeypatch.setattr("walle_core.runtime.governor.contended", lambda *_a, **_k: True)
    busy = calibrate(ReferenceBackend())
    assert busy.load > prof.BUSY_LOAD
    monkeypatch.setattr("walle_core.runtime.governor.contended", lambda *_a, **_k: False)
    assert calibrate(ReferenceBackend()).load == pytest.approx(0.1)


def test_a_stalled_launch_timing_does_not_poison_the_profile(monkeypatch: Any) -> None:
    """The launch overhead is timed first and last; a first figure taken while the process was
    stalled (58 us instead of ~1, as once seen) must not become the profile's launch cost,
    nor turn into absurd rates, and the profile is kept only as provisional."""
    from walle_core.search import profile as prof

    monkeypatch.setattr(prof, "machine_load", lambda: 0.1)
    real = prof._Bench.time
    launches: list[float] = []

    def stalled_once(self: Any, prim: Any, ins: Any, outs: Any, *args: Any, **kw: Any) -> float:
        t = real(self, prim, ins, outs, *args, **kw)
        if isinstance(prim, Elementwise) and outs[0].shape == (16,):
            launches.append(t)
            if len(launches) == 1:
                return 58e-6 + t  # the stalled first measurement
        return float(t)

    monkeypatch.setattr(prof._Bench, "time", stalled_once)
    p = calibrate(ReferenceBackend())
    assert len(launches) == 2
    assert p.launch_s == pytest.approx(launches[1])
    assert p.launch_s < 58e-6
    # rates are work over (time - launch), never over a vanishing remainder
    assert p.reduce_bytes_s < 1e13 and p.ew_bytes_s < 1e13
    assert p.load > prof.BUSY_LOAD  # provisional: re-measured when a session finds it quiet


def test_machine_load_reads_cpu_pressure_before_the_load_average(monkeypatch: Any) -> None:
    """Pressure (other tasks waiting for a CPU) decides whether a timing is provisional where
    the kernel reports it; the load average, which counts this process's own spinning pool
    workers, only where it does not."""
    from walle_core.runtime import governor
    from walle_core.search import profile as prof

    monkeypatch.setattr(governor, "load_per_core", lambda: 2.0)  # our own busy threads
    monkeypatch.setattr(governor, "psi_some_avg10", lambda path=None: 0.0)
    assert prof.machine_load() == 0.0
    monkeypatch.setattr(governor, "psi_some_avg10", lambda path=None: governor.PSI_BUSY)
    assert prof.machine_load() == pytest.approx(prof.BUSY_LOAD)
    monkeypatch.setattr(governor, "psi_some_avg10", lambda path=None: None)
    assert prof.machine_load() == 2.0


def test_measurements_unused_for_keep_days_are_pruned(tmp_path: Path, monkeypatch: Any) -> None:
    """One file per calibration key; entries record the day they were last used and saving
    drops those unused for keep_days; files untouched that long go, and so does the one-file
    table older versions wrote. Reusing an entry keeps it."""
    import os

    from walle_core.search import measure as meas

    run, host = _close_call_search()
    day = [20000]
    monkeypatch.setattr(meas, "today", lambda: day[0])

    path = tmp_path / "m.json"
    path.write_text(json.dumps({"legacy": [1e-3, 0.1, 1]}))  # the one-file table
    mine = meas.Measurements(path).shard_path(meas.Measurements.shard_of(host))
    # an entry in an older format (no day) and one last used 40 days ago
    mine.write_text(json.dumps({"old-format": [1e-3, 0.1, 1], "stale": [1e-3, 0.1, 1, 19960]}))
    gone = tmp_path / "m-0123456789abcdef.json"  # another code version's, long unused
    gone.write_text("{}")
    os.utime(gone, (1e9, 1e9))
    first = meas.Measurements(path, min_seconds=0.0)
    run(first)
    assert not path.exists() and not gone.exists()
    stored = json.loads(mine.read_text())
    assert "stale" not in stored and stored["old-format"][3] == 20000  # read as today
    used = {k for k in stored if k != "old-format"}
    assert used and all(stored[k][3] == 20000 for k in used)
    day[0] = 20025  # 25 days later: the model is loaded again, its entries reused
    again = meas.Measurements(path, min_seconds=0.0)
    run(again)
    assert again.measured == 0
    stored = json.loads(mine.read_text())
    assert all(stored[k][3] == 20025 for k in used) and stored["old-format"][3] == 20000
    day[0] = 20031  # the unused one expires, the reused ones stay
    run(meas.Measurements(path, min_seconds=0.0))
    stored = json.loads(mine.read_text())
    assert "old-format" not in stored and used <= set(stored)


def test_measurements_past_max_entries_keep_what_this_session_used(tmp_path: Path) -> None:
    """Entries of the same day are cut by use in this session, then by age in the file (the
    newest kept): a cap never drops the entries the current code version relies on."""
    from walle_core.search import measure as meas

    path = tmp_path / "m.json"
    day = meas.today()
    path.write_text(json.dumps({f"k{i}": [1e-3, 0.1, 1, day] for i in range(6)}))
    m = meas.Measurements(path, max_entries=3)
    assert len(m.table) == 6
    m.touched.add("k0")
    m.dirty = True
    m.save()
    assert set(json.loads(path.read_text())) == {"k0", "k5", "k4"}


class _TwoWays(ReferenceBackend):
    """Offers a fast variant that holds 10 MB for the session's life and a slightly slower one
    that holds nothing."""

    def algorithms(self, step: Step, inputs: Sequence[TensorSpec | None],
                   outputs: Sequence[TensorSpec], profile: CostProfile) -> list[Algorithm]:
        return [Algorithm("holds", 100e-6, extra_bytes=10 << 20), Algorithm("lean", 105e-6)]


@pytest.mark.parametrize("us_per_mb,expected", [("", "lean"), ("10", "lean"), ("0", "holds"),
                                                ("0.1", "holds")])
def test_memory_held_is_charged_against_time(monkeypatch: Any, us_per_mb: str,
                                             expected: str) -> None:
    """10 MB at the default 10 us/MB outweighs 5 us; with memory free the faster one wins."""
    monkeypatch.setenv("WALLE_MEMORY_US_PER_MB", us_per_mb)
    monkeypatch.setenv("WALLE_MEMORY_BUDGET", "inf")  # the price alone (the budget: below)
    program = planned(mlp())
    backend = _TwoWays()
    placement = place(program, {"reference": CostProfile("reference", "k")}, [backend])
    assert {a.name for a in placement.algorithms} == {expected}


def test_close_calls_pass_weights_as_constants(tmp_path: Path) -> None:
    """A close call is timed with the step's constant inputs (weights) as the backend's
    constants, as the plan passes them: kernels that cache what they derive from a constant
    (Winograd's weights, packed panels) are timed as they will run. The table's key says so."""
    from walle_core.search.measure import Measurements

    made: list[tuple[int, ...]] = []

    class Counting(ReferenceBackend):
        def constant(self, array: np.ndarray) -> Any:
            made.append(tuple(array.shape))
            return super().constant(array)

    program = planned(mlp(hidden=512))
    host = Counting()
    profs = profiles(1e12)
    dev = FakeDevice()
    profs["fakedev"] = CostProfile("fakedev", "d2", **{
        k: v for k, v in profs["reference"].to_json().items()
        if k not in ("version", "backend", "key")})
    consts = program.builder.consts
    measure = Measurements(tmp_path / "m.json", min_seconds=0.0)
    search(program.steps, program.slots, list(program.inputs.values()),
           [s for _, s in program.outputs], consts, program.aliases, [host, dev], profs,
           measure=measure)
    assert measure.measured >= 2
    weight_shapes = {tuple(program.slots[s].shape) for step in program.steps
                     for s in step.inputs if s >= 0 and s in consts}
    assert weight_shapes and weight_shapes & set(made)
    step = program.steps[0]
    ins = [program.slots[s] if s >= 0 else None for s in step.inputs]
    outs = [program.slots[s] for s in step.outputs]
    alg = Algorithm("numpy", 0.0)
    assert measure.key(host, alg, step, ins, outs, [False, True]) != \
        measure.key(host, alg, step, ins, outs)


class _Budgeted(ReferenceBackend):
    """Per step a variant holding 1 MB that saves more time the later the step comes."""

    def __init__(self) -> None:
        super().__init__()
        self.order: dict[str, int] = {}

    def algorithms(self, step: Step, inputs: Sequence[TensorSpec | None],
                   outputs: Sequence[TensorSpec], profile: CostProfile) -> list[Algorithm]:
        rank = self.order.setdefault(step.origin + repr(step.outputs), len(self.order))
        return [Algorithm("holds", 100e-6 - (rank + 1) * 10e-6, extra_bytes=1 << 20),
                Algorithm("lean", 100e-6)]


def test_a_model_of_few_constants_may_hold_the_floor(monkeypatch: Any) -> None:
    """The held-memory budget is never below MEMORY_FLOOR (while it is above 0): a model of
    few constants keeps the Winograd layers a share of them would have taken away."""
    import walle_core.search as search_module

    monkeypatch.setenv("WALLE_MEMORY_US_PER_MB", "1")
    monkeypatch.setenv("WALLE_MEMORY_BUDGET", "1e-9")  # a share of nothing
    monkeypatch.setattr(search_module, "MEMORY_FLOOR", 3 << 20)
    program = planned(mlp())
    placement = place(program, {"reference": CostProfile("reference", "k")}, [_Budgeted()])
    assert [a.name for a in placement.algorithms].count("holds") == \
        min(3, len(placement.algorithms))
    monkeypatch.setenv("WALLE_MEMORY_BUDGET", "0")  # no extra memory at all: no floor
    placement = place(program, {"reference": CostProfile("reference", "k")}, [_Budgeted()])
    assert "holds" not in [a.name for a in placement.algorithms]


@pytest.mark.parametrize("budget_mb", [0, 1, 2])
def test_held_memory_stays_within_a_share_of_the_constants(monkeypatch: Any,
                                                           budget_mb: int) -> None:
    """Past the budget (a share of the model's constant bytes) memory is charged more until the
    choices fit, so the steps saving the least time per byte give up their held memory first."""
    import walle_core.search as search_module

    monkeypatch.setattr(search_module, "MEMORY_FLOOR", 0)
    monkeypatch.setenv("WALLE_MEMORY_US_PER_MB", "1")  # cheap: every step would hold
    program = planned(mlp())
    consts = program.builder.consts
    weights = sum(program.slots[s].nbytes for s in consts if 0 <= s < len(program.slots))
    monkeypatch.setenv("WALLE_MEMORY_BUDGET", str(budget_mb * (1 << 20) / weights))
    backend = _Budgeted()
    placement = place(program, {"reference": CostProfile("reference", "k")}, [backend])
    holds = [i for i, a in enumerate(placement.algorithms) if a.name == "holds"]
    assert len(holds) == min(budget_mb, len(placement.algorithms))
    # the ones kept are the ones saving most (the latest steps)
    assert all(i >= len(placement.algorithms) - budget_mb for i in holds)
    if budget_mb < len(placement.algorithms):
        assert any("held memory" in note for note in placement.notes)
