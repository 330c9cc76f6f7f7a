"""Replacing the task set at run time keeps in-flight state of the tasks that stay."""

from __future__ import annotations

import json

from walle_core.stream.pattern import Trigger
from walle_core.stream.runtime import StreamRuntime
from walle_core.stream.task import StreamTask
from walle_core.stream.triggers import TriggerEngine

from .conftest import ev

VISIT = Trigger("page_enter[page=item_detail] ** page_exit[page=item_detail]")


def test_add_task_mid_visit_keeps_the_visit() -> None:
    engine = TriggerEngine({"visit": VISIT})
    engine.advance(ev("u", "page_enter", 0, "item_detail"))
    engine.advance(ev("u", "click", 1, "item_detail"))
    engine.replace({"visit": VISIT, "pair": Trigger("click buy")})
    engine.advance(ev("u", "click", 2, "item_detail"))
    fired = engine.advance(ev("u", "buy", 3, "item_detail"))
    assert fired is not None and [m.task for m in fired] == ["pair"]  # the new task works
    fired = engine.advance(ev("u", "page_exit", 4, "item_detail"))
    assert fired is not None and [m.task for m in fired] == ["visit"]
    assert [e["id"] for e in fired[0].events] == ["page_enter", "click", "click", "buy",
                                                 "page_exit"]


def test_remove_task_drops_only_its_state() -> None:
    engine = TriggerEngine({"visit": VISIT, "cart": Trigger("add_cart ** buy")})
    engine.advance(ev("u", "page_enter", 0, "item_detail"))
    engine.advance(ev("u", "add_cart", 1, "item_detail"))
    engine.replace({"visit": VISIT})
    assert engine.advance(ev("u", "buy", 2, "item_detail")) is None
    fired = engine.advance(ev("u", "page_exit", 3, "item_detail"))
    assert fired is not None and [m.task for m in fired] == ["visit"]


def test_update_task_pattern_and_limits() -> None:
    engine = TriggerEngine({"t": Trigger("a ** b")})
    engine.advance(ev("u", "a", 0))
    engine.replace({"t": Trigger("a ** b", within_ms=5)})  # same path, tighter limit
    assert engine.advance(ev("u", "b", 50)) is None
    engine.replace({"t": Trigger("a ** c")})
    engine.advance(ev("u", "a", 60))
    fired = engine.advance(ev("u", "c", 61))
    assert fired is not None and fired[0].task == "t"


def test_pending_negation_survives_replace_and_snapshot() -> None:
    trig = Trigger("add_cart", not_followed_by="buy", not_within_ms=100)
    engine = TriggerEngine({"t": trig})
    engine.advance(ev("u", "add_cart", 0))
    engine.replace({"t": trig, "other": Trigger("x")})
    snap = json.loads(json.dumps(engine.snapshot()))
    fresh = TriggerEngine({"t": trig, "other": Trigger("x")})
    fresh.restore(snap)
    fired = fresh.advance(ev("v", "scroll", 500))
    assert fired is not None and [(m.task, m.key) for m in fired] == [("t", "u")]


def test_runtime_replace_tasks_mid_stream() -> None:
    records: list[str] = []
    visit = StreamTask("visit", VISIT, on_match=lambda m: [{"n": len(m.events)}])
    rt = StreamRuntime([visit])
    rt.process(ev("u", "page_enter", 0, "item_detail"))
    rt.process(ev("u", "scroll", 1, "item_detail"))
    extra = StreamTask("scrolls", Trigger("scroll"), on_match=lambda m: records.append("s") or [])
    rt.replace_tasks([visit, extra])
    rt.process(ev("u", "scroll", 2, "item_detail"))
    rt.process(ev("u", "page_exit", 3, "item_detail"))
    assert list(rt.store.features()) == [{"n": 4}]
    assert records == ["s"]
