"""The compiled ``advance`` against the reference engine on the bench's two 100-task mixes."""

from __future__ import annotations

import pytest

from walle_core.stream.bench import MIXES, bench_events
from walle_core.stream.reference import ReferenceEngine
from walle_core.stream.triggers import TriggerEngine, accelerator


@pytest.mark.skipif(accelerator() is None, reason="walle-stream-accel not built")
@pytest.mark.parametrize("mix", sorted(MIXES))
def test_compiled_advance_equals_reference(mix: str) -> None:
    events = bench_events(60, 10, seed=2)
    tasks = MIXES[mix](100, 1)
    new, ref = TriggerEngine(tasks), ReferenceEngine(tasks)
    assert new.accelerated
    for event in events:
        got, want = new.advance(event) or [], ref.advance(event) or []
        assert [(m.task, m.key, m.events, m.start_ts, m.end_ts) for m in got] == [
            (m.task, m.key, m.events, m.start_ts, m.end_ts) for m in want]
    assert new.fired == ref.fired and new.snapshot() == ref.snapshot()
