"""Operators and windows, and keyed state that survives a checkpoint and restart."""

from __future__ import annotations

from typing import Any

from walle_core.stream.operators import (
    Count,
    CountBy,
    CountWindow,
    Max,
    Mean,
    Pipeline,
    Session,
    Sliding,
    Sum,
    Tumbling,
)
from walle_core.stream.store import StreamStore

from .conftest import ev


def feed(pipe: Pipeline, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for event in events:
        out.extend(pipe.push(event))
    return out + pipe.flush()


def clicks(*stamps: int, user: str = "u") -> list[dict[str, Any]]:
    return [ev(user, "click", ts, "home", price=ts % 7) for ts in stamps]


def test_filter_and_map_without_aggregate() -> None:
    pipe = Pipeline("p").filter(lambda e: e["id"] == "click").map(
        lambda e: {**e, "id": "CLICK"})
    out = feed(pipe, [ev("u", "scroll", 1), ev("u", "click", 2)])
    assert [e["id"] for e in out] == ["CLICK"]


def test_running_aggregate_per_key() -> None:
    pipe = Pipeline("p").key_by(lambda e: e["user"]).aggregate(Count())
    out = feed(pipe, clicks(1, 2, user="a") + clicks(3, user="b"))
    assert [(r["key"], r["value"]) for r in out] == [("a", 1), ("a", 2), ("b", 1)]


def test_count_window() -> None:
    pipe = Pipeline("p").key_by(lambda e: e["user"]).window(CountWindow(2)).aggregate(
        Sum(lambda e: e["ts"]))
    out = feed(pipe, clicks(1, 2, 3, 4, 5))
    assert [r["value"] for r in out] == [3, 7, 5]  # the last, partial window closes at flush


def test_tumbling_window() -> None:
    pipe = Pipeline("p").key_by(lambda e: e["user"]).window(Tumbling(10)).aggregate(Count())
    out = feed(pipe, clicks(0, 3, 9, 10, 25, 29))
    assert [(r["start"], r["end"], r["value"]) for r in out] == [(0, 10, 3), (10, 20, 1),
                                                                   (20, 30, 2)]


def test_sliding_window() -> None:
    pipe = Pipeline("p").window(Sliding(10, 5)).aggregate(Count())
    out = feed(pipe, clicks(1, 6, 12))
    # windows [-5,5): {1}; [0,10): {1,6}; [5,15): {6,12}; [10,20): {12}
    assert [(r["start"], r["value"]) for r in out] == [(-5, 1), (0, 2), (5, 2), (10, 1)]


def test_session_window_and_other_aggregates() -> None:
    pipe = Pipeline("p").key_by(lambda e: e["user"]).window(Session(5)).aggregate(
        Max(lambda e: e["ts"]))
    out = feed(pipe, clicks(0, 3, 7, 20, 22))
    assert [(r["start"], r["end"], r["value"]) for r in out] == [(0, 12, 7), (20, 27, 22)]
    mean = feed(Pipeline("m").window(Tumbling(100)).aggregate(Mean(lambda e: e["ts"])),
                clicks(1, 2, 3))
    assert mean[0]["value"] == 2
    by_id = feed(Pipeline("c").window(Tumbling(100)).aggregate(CountBy(lambda e: e["id"])),
                 [ev("u", "click", 1), ev("u", "buy", 2), ev("u", "click", 3)])
    assert by_id[0]["value"] == {"click": 2, "buy": 1}


def test_keyed_state_survives_checkpoint_and_restart(tmp_path: Any) -> None:
    events = [ev(f"u{i % 3}", "click", ts) for i, ts in enumerate(range(0, 400, 7))]

    def build(store: StreamStore | None) -> Pipeline:
        return Pipeline("w").key_by(lambda e: e["user"]).window(Tumbling(50)).aggregate(
            Count()).bind(store)

    reference = feed(build(None), events)
    path = tmp_path / "state.sqlite"
    store = StreamStore(path)
    first = build(store)
    out = [r for e in events[:30] for r in first.push(e)]
    first.checkpoint()
    store.commit()
    first.push(events[30])  # work after the checkpoint is lost with the process...
    store.conn.close()
    store = StreamStore(path)
    second = build(store)
    out += feed(second, events[30:])  # ...and redone from the checkpoint's offset
    key = lambda r: (r["key"], r["start"])  # noqa: E731
    assert sorted(out, key=key) == sorted(reference, key=key)
