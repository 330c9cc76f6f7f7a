"""``walle stream bench``: the runtime measured alone, on one core, with 100 tasks' triggers.

Events are generated first (through the ``synthetic`` source plugin) and held in memory, so the
timings measure the runtime, not the generator or JSON decoding. Three figures, each the median
of ``repeat`` runs on a fresh engine:

* ``loop``: a bare ``for`` over the events calling a no-op: CPython's floor for this loop;
* ``trie``: :meth:`TriggerEngine.advance` with every task's trigger loaded;
* ``runtime``: validation + trie + task handlers + feature insert into SQLite (in-memory file),
  with the page-exit-to-stored-feature latency p50/p99.

The 99 extra patterns are drawn (seeded) from templates over the synthetic app's vocabulary, so
that like real tasks they share prefixes, use predicates, gaps, repetition, negation and limits.
Like real tasks they *complete* on user intent (click, favorite, add to cart, buy), while any event
(scroll and exposure are over half the traffic) may start or continue them.
"""

from __future__ import annotations

import gc
import random
import statistics
import time
from typing import Any

from walle_core.stream.events import Event
from walle_core.stream.pattern import Trigger
from walle_core.stream.runtime import StreamRuntime
from walle_core.stream.task import StreamTask
from walle_core.stream.triggers import Match, TriggerEngine

PAGES = ("home", "search", "item_detail", "cart")
ACTIONS = ("scroll", "exposure", "click", "favorite", "add_cart", "buy")
RARE = ("click", "favorite", "add_cart", "buy")  # what tasks complete on: intent, not noise


def bench_triggers(count: int, seed: int = 0) -> dict[str, Trigger]:
    """``count`` distinct triggers: the IPV trigger plus seeded patterns from templates."""
    rng = random.Random(seed)
    triggers = {"ipv_feature": Trigger(
        "page_enter[page=item_detail] ** page_exit[page=item_detail]", within_ms=7_200_000)}
    templates = [
        lambda: Trigger(f"page_enter[page={rng.choice(PAGES)}] ** {rng.choice(RARE)}",
                        within_ms=rng.choice([10_000, 60_000, 600_000])),
        lambda: Trigger(f"{rng.choice(ACTIONS)} {rng.choice(RARE)}"),
        lambda: Trigger(f"{rng.choice(RARE)}{{{rng.randint(2, 4)}}}"),
        lambda: Trigger(f"{rng.choice(ACTIONS)}[page={rng.choice(PAGES)}] ** "
                        f"{rng.choice(RARE)}[page={rng.choice(PAGES)}]", within_ms=300_000),
        lambda: Trigger(f"app_start ** page_enter[page={rng.choice(PAGES)}] ** "
                        f"{rng.choice(RARE)}", within_ms=1_800_000),
        lambda: Trigger(f"{rng.choice(ACTIONS)}+ {rng.choice(RARE)}"),
        lambda: Trigger("add_cart", not_followed_by="buy",
                        not_within_ms=rng.choice([60_000, 600_000])),
        lambda: Trigger(f"page_enter[page={rng.choice(PAGES)}] ** {rng.choice(RARE)}? "
                        f"page_exit[page={rng.choice(PAGES)}]", within_ms=600_000),
        lambda: Trigger(f"search ** {rng.choice(RARE)}[page=item_detail]", within_ms=600_000),
    ]
    while len(triggers) < count:
        trigger = rng.choice(templates)()
        if trigger not in triggers.values():
            triggers[f"task{len(triggers):03d}"] = trigger
    return triggers


def bench_events(users: int, minutes: float, seed: int = 0) -> list[Event]:
    from walle_core.stream.source import load_source

    source = load_source("synthetic").from_options(
        {"users": str(users), "minutes": str(minutes), "seed": str(seed)})
    return [e for e in source.events() if isinstance(e, dict)]


def _timed(fn: Any, events: list[Event]) -> float:
    gc.collect()
    gc.disable()
    try:
        began = time.perf_counter()
        for event in events:
            fn(event)
        return time.perf_counter() - began
    finally:
        gc.enable()


def _noop(event: Event) -> None:
    return None


def _ipv(match: Match) -> list[dict[str, Any]]:
    events = match.events
    return [{"user": match.key, "item_id": events[0]["args"].get("item_id"),
             "dwell_ms": events[-1]["ts"] - events[0]["ts"], "n": len(events)}]


def run_bench(tasks: int = 100, users: int = 2000, minutes: float = 20.0, repeat: int = 5,
              seed: int = 0) -> dict[str, Any]:
    """Run the three measurements; return figures (medians) and the run's shape."""
    events = bench_events(users, minutes, seed)
    triggers = bench_triggers(tasks, seed)
    loop, trie, runtime, p50, p99, fired = [], [], [], [], [], 0
    for _ in range(repeat):
        loop.append(len(events) / _timed(_noop, events))
        engine = TriggerEngine(triggers)
        trie.append(len(events) / _timed(engine.advance, events))
        fired = engine.fired
        stream_tasks = [StreamTask(name, trigger, on_match=_ipv) for name, trigger in
                        triggers.items()]
        rt = StreamRuntime(stream_tasks, checkpoint_every=50_000, measure_bytes=False)
        runtime.append(len(events) / _timed(rt.process, events))
        p50.append(rt.stats.percentile_ms(0.5) or 0.0)
        p99.append(rt.stats.percentile_ms(0.99) or 0.0)
    engine = TriggerEngine(triggers)
    return {
        "events": len(events), "tasks": len(triggers), "trie": engine.trie.describe(),
        "triggers_fired": fired, "repeat": repeat,
        "loop_events_per_s": statistics.median(loop),
        "trie_events_per_s": statistics.median(trie),
        "trie_events_per_s_all": [round(x) for x in trie],
        "runtime_events_per_s": statistics.median(runtime),
        "latency_p50_ms": statistics.median(p50), "latency_p99_ms": statistics.median(p99),
    }
