"""BLAS threads drop to one while the CPU is contended, and come back when it is not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from walle_core.runtime import governor as gov


def test_psi_is_parsed(tmp_path: Path) -> None:
    f = tmp_path / "cpu"
    f.write_text("some avg10=47.68 avg60=70.04 avg300=39.33 total=2587\n"
                 "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    assert gov.psi_some_avg10(f) == pytest.approx(47.68)
    assert gov.psi_some_avg10(tmp_path / "missing") is None


@pytest.mark.parametrize("psi,load,previous,want", [
    (40.0, None, False, True), (5.0, None, True, False),
    (15.0, None, True, True), (15.0, None, False, False),  # hysteresis band keeps the state
    (None, 2.0, False, True), (None, 0.5, True, False), (None, 1.0, True, True),
    (None, None, True, False),  # nothing to go by: not contended
])
def test_contended_thresholds(psi: float | None, load: float | None, previous: bool,
                              want: bool) -> None:
    assert gov.contended(previous, psi=lambda: psi, load=lambda: load) is want


def test_governor_switches_blas_threads_and_back(monkeypatch: Any) -> None:
    applied: list[int] = []
    state = {"busy": False}
    clock = [100.0]
    monkeypatch.setattr(gov.time, "monotonic", lambda: clock[0])
    g = gov.ThreadGovernor(4, interval=0.5, probe=lambda prev: state["busy"],
                           apply=applied.append)
    g.tick()
    assert applied == []  # quiet: nothing changes
    state["busy"] = True
    clock[0] += 0.1
    g.tick()
    assert applied == []  # checked at most every interval
    clock[0] += 0.5
    g.tick()
    assert applied == [1] and g.busy
    state["busy"] = False
    clock[0] += 0.6
    g.tick()
    assert applied == [1, 4] and not g.busy and g.switches == 2


def test_single_thread_sessions_and_the_opt_out_never_switch(monkeypatch: Any) -> None:
    assert not gov.ThreadGovernor(1).enabled
    monkeypatch.setenv("WALLE_ADAPTIVE_THREADS", "0")
    assert not gov.ThreadGovernor(4).enabled


def test_session_ticks_the_governor() -> None:
    import numpy as np
    from onnx import TensorProto, helper

    from walle_core.runtime.session import Session

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    session = Session(model.SerializeToString(), backend="reference", threads=2)
    seen: list[bool] = []
    session.governor._probe = lambda prev: seen.append(prev) or False  # type: ignore[assignment]
    session.run({"x": np.array([-1.0, 0.0, 2.0], np.float32)})
    assert seen == [False]


def test_repeated_runs_skip_validation_but_a_changed_feed_is_checked() -> None:
    import numpy as np
    from onnx import TensorProto, helper

    from walle_core.ir.errors import InputError
    from walle_core.runtime.session import Session

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    session = Session(model.SerializeToString(), backend="reference")
    x = np.array([[-1.0, 2.0]], np.float32)
    np.testing.assert_array_equal(session.run({"x": x})["y"], [[0.0, 2.0]])
    np.testing.assert_array_equal(session.run({"x": -x})["y"], [[1.0, 0.0]])  # fast path
    with pytest.raises(InputError, match="dtype"):
        session.run({"x": x.astype(np.float64)})
    with pytest.raises(InputError, match="rank"):
        session.run({"x": x[0]})
    np.testing.assert_array_equal(session.run({"x": np.ones((3, 2), np.float32)})["y"],
                                  np.ones((3, 2)))


def test_recent_pressure_is_the_share_since_the_last_look(tmp_path: Path,
                                                          monkeypatch: Any) -> None:
    f = tmp_path / "cpu"
    clock = [10.0]
    monkeypatch.setattr(gov.time, "monotonic", lambda: clock[0])

    def write(avg10: float, total: int) -> None:
        f.write_text(f"some avg10={avg10} avg60=0.00 avg300=0.00 total={total}\n"
                     "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")

    recent = gov.RecentPressure(f)
    write(60.0, 1_000_000)
    assert recent() == pytest.approx(60.0)  # first look: avg10
    write(60.0, 1_100_000)  # 0.1 s of stall in the next 0.5 s: 20 %, though avg10 says 60
    clock[0] += 0.5
    assert recent() == pytest.approx(20.0)
    write(55.0, 1_100_000)  # nothing waited since: the past no longer counts
    clock[0] += 0.5
    assert recent() == pytest.approx(0.0)
    assert gov.RecentPressure(tmp_path / "missing")() is None


def test_a_run_from_another_thread_gets_the_limits_again() -> None:
    import threading

    applied: list[int] = []
    g = gov.ThreadGovernor(1, apply=applied.append)  # disabled: one thread, never probes
    g.tick()
    g.tick()
    assert applied == []  # the thread that made it: configured already
    worker = threading.Thread(target=g.tick)
    worker.start()
    worker.join()
    assert applied == [1]  # numba's thread count is per thread: applied there too


def test_the_blas_cap_bounds_every_later_limit() -> None:
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas() -> int:
        counts = [p["num_threads"] for p in threadpoolctl.threadpool_info()
                  if p.get("user_api") == "blas"]
        if not counts:
            pytest.skip("no BLAS that threadpoolctl can see")
        return max(counts)

    before = blas()
    try:
        gov.cap_blas(1)
        gov.set_blas_threads(2)
        assert blas() == 1
        gov.cap_blas(None)
        gov.set_blas_threads(2)
        assert blas() == 2
    finally:
        gov.cap_blas(None)
        gov.set_blas_threads(before)


def test_the_first_check_covers_the_time_since_the_session_was_made(tmp_path: Path) -> None:
    """PSI's avg10 may still hold a process that has just ended; the governor primes its
    pressure reading when made, so the first run is judged on what happened since."""
    psi = tmp_path / "cpu"

    def write(avg10: float, total: int) -> None:
        psi.write_text(f"some avg10={avg10} avg60=0.00 avg300=0.00 total={total}\n"
                       "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")

    write(90.0, 1_000_000)  # a busy neighbour just finished: avg10 is still high
    recent = gov.RecentPressure(psi)
    assert recent() == pytest.approx(90.0)  # unprimed: the first reading is avg10
    write(90.0, 1_000_000)  # no stall since
    assert recent() == pytest.approx(0.0)

    original = gov.RecentPressure.__init__

    def on_tmp(self: Any, path: Path = psi) -> None:
        original(self, psi)

    applied: list[int] = []
    mp = pytest.MonkeyPatch()
    mp.setattr(gov.RecentPressure, "__init__", on_tmp)
    try:
        write(90.0, 2_000_000)
        g = gov.ThreadGovernor(2, apply=applied.append)
        g.tick()  # nothing stalled since the governor was made: stays at two threads
        assert applied == [] and not g.busy
    finally:
        mp.undo()
