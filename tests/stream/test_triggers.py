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
