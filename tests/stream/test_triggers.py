"""Pattern semantics of the trie: ids, globs, predicates, repetition, gaps, limits, negation."""

from __future__ import annotations

import pytest

from walle_core.stream.pattern import PatternError, Trigger
from walle_core.stream.triggers import TriggerEngine

from .conftest import ev


def run(triggers: dict[str, Trigger], ids: list[str], step: int = 10,
        user: str = "u") -> list[tuple[int, str, list[str]]]:
    """Feed ``ids`` (optionally ``id@page``) and return (position, task, window ids) per fire."""
    engine = TriggerEngine(triggers)
    out = []
    for i, spec in enumerate(ids):
        eid, _, page = spec.partition("@")
        for match in engine.advance(ev(user, eid, i * step, page)) or []:
            out.append((i, match.task, [e["id"] for e in match.events]))
    for match in engine.flush():
        out.append((len(ids), match.task, [e["id"] for e in match.events]))
    return out


def test_exact_sequence_is_strictly_contiguous() -> None:
    fires = run({"t": Trigger("a b")}, ["a", "b", "a", "x", "b", "a", "b"])
    assert fires == [(1, "t", ["a", "b"]), (6, "t", ["a", "b"])]


def test_any_and_glob_wildcards() -> None:
    assert run({"t": Trigger("a * c")}, ["a", "q", "c", "a", "c"]) == [(2, "t", ["a", "q", "c"])]
    fires = run({"t": Trigger("page_* buy")}, ["page_enter", "buy", "page_exit", "buy", "x", "buy"])
    assert [f[0] for f in fires] == [1, 3]


def test_predicates_on_page_and_args() -> None:
    engine = TriggerEngine({"t": Trigger("click[page=home,args.item_id=i7]")})
    assert engine.advance(ev("u", "click", 1, "home", item_id="i7"))
    assert not engine.advance(ev("u", "click", 2, "cart", item_id="i7"))
    assert not engine.advance(ev("u", "click", 3, "home", item_id="i8"))


def test_bounded_repetition() -> None:
    fires = run({"t": Trigger("a{2,3} b")}, ["a", "b", "a", "a", "b", "a", "a", "a", "b"])
    # at 8 both "a a b" and "a a a b" complete: the task fires once, with the shortest window
    assert [(pos, window) for pos, _, window in fires] == [(4, ["a", "a", "b"]),
                                                           (8, ["a", "a", "b"])]
    fires = run({"t": Trigger("a{3} b")}, ["a", "a", "b", "a", "a", "a", "b"])
    assert [(pos, window) for pos, _, window in fires] == [(6, ["a", "a", "a", "b"])]


def test_one_or_more_and_optional() -> None:
    assert [f[0] for f in run({"t": Trigger("a+ b")}, ["a", "a", "a", "b", "b"])] == [3]
    fires = run({"t": Trigger("a c? b")}, ["a", "b", "a", "c", "b", "a", "x", "b"])
    assert [(f[0], f[2]) for f in fires] == [(1, ["a", "b"]), (4, ["a", "c", "b"])]


def test_gap_skips_until_next_match_and_consumes() -> None:
    trig = {"t": Trigger("enter ** exit")}
    fires = run(trig, ["enter", "x", "y", "exit", "z", "exit"])
    assert fires == [(3, "t", ["enter", "x", "y", "exit"])]  # the second exit has no enter


def test_overlapping_enters_pair_with_the_latest() -> None:
    fires = run({"t": Trigger("enter ** exit")}, ["enter", "a", "enter", "b", "exit"])
    assert fires == [(4, "t", ["enter", "b", "exit"])]


def test_time_limit_drops_slow_matches() -> None:
    trig = {"t": Trigger("a ** b", within_ms=25)}
    assert run(trig, ["a", "x", "b"], step=10) == [(2, "t", ["a", "x", "b"])]
    assert run(trig, ["a", "x", "y", "b"], step=10) == []


def test_not_followed_by_within() -> None:
    trig = {"t": Trigger("add_cart", not_followed_by="buy", not_within_ms=25)}
    # buy arrives in time: cancelled
    assert run(trig, ["add_cart", "x", "buy", "y", "z", "w"], step=10) == []
    # buy too late: the match fires once the watermark passes the deadline (before the buy)
    fires = run(trig, ["add_cart", "x", "y", "z", "buy"], step=10)
    assert fires == [(3, "t", ["add_cart"])]
    # end of stream: still pending, fires at flush
    assert run(trig, ["add_cart", "x"], step=10) == [(2, "t", ["add_cart"])]


def test_watermark_from_other_users_expires_negations() -> None:
    engine = TriggerEngine({"t": Trigger("add_cart", not_followed_by="buy", not_within_ms=100)})
    assert engine.advance(ev("alice", "add_cart", 0)) is None
    fired = engine.advance(ev("bob", "scroll", 500))
    assert fired is not None and [(m.task, m.key) for m in fired] == [("t", "alice")]


def test_tasks_completing_on_one_event_fire_in_one_batch_and_share_prefixes() -> None:
    engine = TriggerEngine({"x": Trigger("a ** b"), "y": Trigger("a ** b", within_ms=1000),
                            "z": Trigger("a c"), "w": Trigger("b")})
    assert engine.advance(ev("u", "a", 0)) is None
    batch = engine.advance(ev("u", "b", 5))
    assert batch is not None and sorted(m.task for m in batch) == ["w", "x", "y"]
    assert engine.trie.stats.shared_nodes_saved >= 2  # "a" and "** b" are stored once


def test_keys_are_independent() -> None:
    engine = TriggerEngine({"t": Trigger("a b")})
    engine.advance(ev("u1", "a", 0))
    assert engine.advance(ev("u2", "b", 1)) is None
    assert engine.advance(ev("u1", "b", 2)) is not None


def test_untouched_events_leave_no_state() -> None:
    engine = TriggerEngine({"t": Trigger("a ** b")})
    for i in range(100):
        assert engine.advance(ev(f"u{i}", "noise", i)) is None
    assert engine.keys == {}


@pytest.mark.parametrize("bad", ["", "a **", "a{3,1}", "a[page]", "a ?", "b{0,1}"])
def test_bad_patterns_are_rejected(bad: str) -> None:
    with pytest.raises(PatternError):
        Trigger(bad)


def test_negation_needs_both_parts() -> None:
    with pytest.raises(PatternError):
        Trigger("a", not_followed_by="b")


def feed(triggers: dict[str, Trigger], log: list[tuple[str, dict[str, str]]],
         engine_cls: type = TriggerEngine) -> list[tuple[int, str, int, int]]:
    """(position, task, first, last position of the window) per fire, events 10 ms apart."""
    engine = engine_cls(triggers)
    out = []
    for i, (eid, args) in enumerate(log):
        for match in engine.advance({"user": "u", "id": eid, "ts": i * 10, "page": "p",
                                     "args": {**args, "pos": i}}) or []:
            events = match.events
            out.append((i, match.task, events[0]["args"]["pos"], events[-1]["args"]["pos"]))
    return out


VISIT = Trigger("enter[args.item=$i] ** exit[args.item=$i]")


@pytest.mark.parametrize("engine_cls", ["new", "reference"])
def test_variable_binds_on_first_use_and_must_match_later(engine_cls: str) -> None:
    from walle_core.stream.reference import ReferenceEngine

    cls = TriggerEngine if engine_cls == "new" else ReferenceEngine
    log = [("enter", {"item": "A"}), ("enter", {"item": "B"}), ("exit", {"item": "A"}),
           ("x", {}), ("exit", {"item": "C"}), ("exit", {"item": "B"}), ("exit", {"item": "B"})]
    # interleaved visits each close on their own item's exit; C's exit closes nothing
    assert feed({"visit": VISIT}, log, cls) == [(2, "visit", 0, 2), (5, "visit", 1, 5)]


def test_same_binding_later_start_wins_and_missing_field_does_not_bind() -> None:
    log = [("enter", {"item": "A"}), ("enter", {}), ("enter", {"item": "A"}), ("exit", {}),
           ("exit", {"item": "A"})]
    assert feed({"visit": VISIT}, log) == [(4, "visit", 2, 4)]


def test_not_equal_to_a_bound_variable_and_contiguous_steps() -> None:
    change = Trigger("view[args.item=$i] view[args.item!=$i]")
    log = [("view", {"item": "A"}), ("view", {"item": "A"}), ("view", {"item": "B"}),
           ("view", {})]
    assert feed({"change": change}, log) == [(2, "change", 1, 2), (3, "change", 2, 3)]
    same = Trigger("view[args.item=$i]{3}")
    log = [("view", {"item": "A"})] * 2 + [("view", {"item": "B"})] * 3
    assert feed({"same": same}, log) == [(4, "same", 2, 4)]


def test_bindings_survive_snapshot_restore_and_replace() -> None:
    import json

    engine = TriggerEngine({"visit": VISIT})
    engine.advance(ev("u", "enter", 1, item="A"))
    engine.advance(ev("u", "enter", 2, item="B"))
    snap = json.loads(json.dumps(engine.snapshot()))
    restored = TriggerEngine({"visit": VISIT})
    restored.restore(snap)
    restored.replace({"visit": VISIT, "other": Trigger("zzz")})
    assert restored.live_cursors() == 2
    fired = restored.advance(ev("u", "exit", 3, item="A")) or []
    assert [(m.task, [e["args"]["item"] for e in m.events]) for m in fired] == [
        ("visit", ["A", "B", "A"])]


@pytest.mark.parametrize("bad", ["a[args.x!=$v]", "a[args.x=$v,args.y!=$v]", "a[args.x=$1]",
                                 "a[args.x=$] b"])
def test_bad_variable_use_is_rejected(bad: str) -> None:
    with pytest.raises(PatternError):
        Trigger(bad)
    with pytest.raises(PatternError):
        Trigger("a", not_followed_by="b[args.x=$v]", not_within_ms=5)
