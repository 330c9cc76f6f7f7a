"""The optimised engine against the previous one (kept as the reference), on random inputs.

Why: every change to the hot path (:mod:`walle_core.stream.triggers`) must be a pure speed-up,
with the previous engine (:mod:`walle_core.stream.reference`) as the oracle. Seeded
random task sets (exact ids, globs, page/user/args predicates, repetition, gaps, ``within``,
"not followed by") and random streams (several users, timestamps that sometimes go back) run
through both engines; every event's batch (task, key, window, start/end time), the counts, the
snapshots, and the end-of-stream flush must be identical, including across snapshot/restore and
``replace`` of the task set mid-stream.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from walle_core.stream.pattern import PatternError, Trigger
from walle_core.stream.reference import ReferenceEngine
from walle_core.stream.triggers import Match, TriggerEngine

IDS = ("a", "b", "c", "d")
PAGES = ("p", "q")


def _atom(rng: random.Random, bind: bool = False) -> str:
    name = rng.choice(IDS + ("*", "a*") if rng.random() < 0.15 else IDS)
    preds = []
    if bind and rng.random() < 0.5:  # variables: the first use binds, later ones compare
        preds.append(f"{rng.choice(('args.k', 'args.j', 'page'))}"
                     f"{rng.choice(('=', '=', '!='))}${rng.choice('xy')}")
    if rng.random() < 0.3:
        preds.append(f"page{rng.choice(('=', '!='))}{rng.choice(PAGES)}")
    if rng.random() < 0.15:
        preds.append(f"args.k={rng.choice('12')}")
    if rng.random() < 0.05:
        preds.append(f"user={rng.choice(('u0', 'u1'))}")
    return name + (f"[{','.join(preds)}]" if preds else "")


def _trigger(rng: random.Random, bind: bool = False) -> Trigger:
    while True:
        parts: list[str] = []
        for i in range(rng.randint(1, 3)):
            if i and rng.random() < 0.4:
                parts.append("**")
            quant = rng.choice(("", "", "", "+", "?", "{2}", "{1,2}"))
            parts.append(_atom(rng, bind) + quant)
        within = rng.choice((None, 5, 20, 60))
        neg = rng.random() < 0.15
        try:
            return Trigger(" ".join(parts), within_ms=within,
                           not_followed_by=rng.choice(IDS) if neg else None,
                           not_within_ms=rng.choice((3, 30)) if neg else None)
        except PatternError:
            continue


def _tasks(rng: random.Random, count: int, bind: bool = False) -> dict[str, Trigger]:
    return {f"t{rng.randrange(40)}": _trigger(rng, bind) for _ in range(count)}


def _events(rng: random.Random, count: int, bind: bool = False) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    ts = 0
    for _ in range(count):
        ts += rng.choice((0, 1, 1, 2, 5))
        if rng.random() < 0.03:
            ts = max(0, ts - rng.randint(1, 30))  # late events happen
        args = {"k": rng.choice("123")}
        if bind and rng.random() < 0.7:  # sometimes absent: a step that binds it cannot match
            args["j"] = rng.choice("12")
        out.append({"user": rng.choice(("u0", "u1", "u2")), "id": rng.choice(IDS + ("e",)),
                    "ts": ts, "page": rng.choice(PAGES), "args": args})
    return out


def _view(batch: list[Match] | None) -> list[Any]:
    return [(m.task, m.key, [(e["id"], e["ts"]) for e in m.events], m.start_ts, m.end_ts)
            for m in batch or ()]


def _roundtrip(snap: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(snap))


@pytest.mark.parametrize("seed", range(150))
def test_same_fires_windows_counts(seed: int) -> None:
    _same(seed, bind=False)


@pytest.mark.parametrize("seed", range(60))
def test_same_with_variable_bindings(seed: int) -> None:
    """Patterns that bind and compare ``$x``/``$y`` (on args, some absent, and page)."""
    _same(10_000 + seed, bind=True)


@pytest.mark.parametrize("seed", range(0, 150, 3))
def test_pure_python_path_too(seed: int) -> None:
    """With an accelerator installed the cases above run it; the Python method must agree too."""
    _same(seed, bind=False, accel=False)
    _same(10_000 + seed % 60, bind=True, accel=False)


def test_accelerator_is_used_when_installed() -> None:
    from walle_core.stream.triggers import accelerator

    engine = TriggerEngine({"t": Trigger("a ** b")})
    assert engine.accelerated == (accelerator() is not None)
    assert not TriggerEngine({"t": Trigger("a")}, accel=False).accelerated


def _same(seed: int, bind: bool, accel: bool = True) -> None:
    rng = random.Random(seed)
    tasks = _tasks(rng, rng.randint(1, 8), bind)
    new, ref = TriggerEngine(tasks, accel), ReferenceEngine(tasks)
    events = _events(rng, 400, bind)
    restore_at, replace_at = rng.randrange(400), rng.randrange(400)
    for i, event in enumerate(events):
        if i == restore_at:  # a checkpoint taken and resumed in fresh engines
            snap = _roundtrip(new.snapshot())
            assert snap == _roundtrip(ref.snapshot())
            new, ref = TriggerEngine(tasks, accel), ReferenceEngine(tasks)
            new.restore(snap)
            ref.restore(_roundtrip(snap))
        if i == replace_at:  # keep some tasks, drop some, add some
            kept = {k: v for k, v in tasks.items() if rng.random() < 0.6}
            tasks = {**kept, **_tasks(rng, rng.randint(0, 4), bind)}
            new.replace(tasks)
            ref.replace(tasks)
        assert _view(new.advance(event)) == _view(ref.advance(event)), (seed, i)
        assert new.fired == ref.fired
    assert _roundtrip(new.snapshot()) == _roundtrip(ref.snapshot())
    assert new.live_cursors() == ref.live_cursors()
    assert new.evict_expired() == ref.evict_expired()
    assert _view(new.flush()) == _view(ref.flush())
    assert new.fired == ref.fired


@pytest.mark.parametrize("accel", [True, False])
def test_bench_mixes_agree(accel: bool) -> None:
    from walle_core.stream.bench import MIXES, bench_events

    events = bench_events(80, 10, seed=1)
    for make in MIXES.values():
        tasks = make(100, 0)
        new, ref = TriggerEngine(tasks, accel), ReferenceEngine(tasks)
        for event in events:
            assert _view(new.advance(event)) == _view(ref.advance(event))
        assert new.fired == ref.fired and new.fired > 0
        assert _view(new.flush()) == _view(ref.flush())
