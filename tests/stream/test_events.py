from __future__ import annotations

from walle_core.stream.events import check_event, parse_event
from walle_core.stream.pattern import Trigger
from walle_core.stream.runtime import StreamRuntime
from walle_core.stream.task import StreamTask

from .conftest import ev


def test_valid_event_passes() -> None:
    assert check_event(ev("u1", "click", 5, "home", item_id="i1")) is None


def test_each_kind_of_malformed_event_has_a_reason() -> None:
    cases = {
        "[1, 2]": "not a JSON object",
        "{oops": "invalid JSON",
        '{"id": "x", "ts": 1, "page": "", "args": {}}': "missing field 'user'",
        '{"user": "u", "id": "x", "ts": "1", "page": "", "args": {}}': "field 'ts'",
        '{"user": "u", "id": "x", "ts": -4, "page": "", "args": {}}': "field 'ts'",
        '{"user": "u", "id": "", "ts": 1, "page": "", "args": {}}': "field 'id'",
        '{"user": "u", "id": "x", "ts": 1, "page": 3, "args": {}}': "field 'page'",
        '{"user": "u", "id": "x", "ts": 1, "page": "", "args": []}': "field 'args'",
        '{"user": "u", "id": "x", "ts": true, "page": "", "args": {}}': "field 'ts'",
    }
    for raw, expected in cases.items():
        event, reason = parse_event(raw)
        assert event is None
        assert reason is not None and expected in reason, (raw, reason)


def test_runtime_counts_rejects_and_keeps_going() -> None:
    task = StreamTask("pair", Trigger("a b"), on_match=lambda m: [{"n": len(m.events)}])
    rt = StreamRuntime([task])
    for raw in ['{"broken', ev("u", "a", 1), [1], ev("u", "b", 2),
                {"user": "u", "id": "a", "ts": "late", "page": "", "args": {}}]:
        rt.process(raw)  # never raises
    assert rt.stats.events_in == 5
    assert rt.stats.rejected.total == 3
    assert sum(rt.stats.rejected.by_reason.values()) == 3
    assert list(rt.store.features()) == [{"n": 2}]
