"""``walle stream bench``: the runtime measured alone, on one core, with 100 tasks' triggers.

Events are generated first (through the ``synthetic`` source plugin) and held in memory, so the
timings measure the runtime, not the generator or JSON decoding. Times are the benchmarking
thread's CPU time (``time.thread_time``), so a shared machine's other load does not inflate them.
Three figures, each the median of ``repeat`` runs on a fresh engine:

* ``loop``: a bare ``for`` over the events calling a no-op: CPython's floor for this loop;
* ``trie``: :meth:`TriggerEngine.advance` with every task's trigger loaded (the compiled
  accelerator's when one is installed, see ``accelerated``; ``python_trie`` is then the pure-Python
  method on the same events);
* ``previous``: the same for :class:`~walle_core.stream.reference.ReferenceEngine`, the engine
  before the hot-path tuning, on the same events in the same process (the honest "before");
* ``runtime``: validation + trie + task handlers + feature insert into SQLite (in-memory file),
  with the page-exit-to-stored-feature latency p50/p99.

Two trigger mixes, both reported (a figure is only honest next to the other):

* ``demanding``: the IPV trigger plus 99 patterns drawn (seeded) from templates over the synthetic
  app's vocabulary; they share prefixes, use predicates, gaps, repetition, negation and limits, and
  most of them start on *any* common event (``scroll+ click``, ``exposure favorite``...) and
  complete on intent (click, favorite, add to cart, buy). Every event moves several cursors and
  there are ~0.9 fires per event: a stress mix, far denser than a real app's trigger set.
* ``realistic``: 100 distinct tasks spread over the app's page/event vocabulary the way product
  teams write them: a visit feature per page, "first <action> after entering <page>", search
  conversion, session features, cart abandonment (negation), and item/query campaign tasks whose
  ``args`` predicates pick one item or query out of the catalogue. Each is specific, so an event
  touches few cursors and the fire rate is what an app would see (~0.1 per event).
"""

from __future__ import annotations

import gc
import random
import statistics
import time
from typing import Any

from walle_core.stream.events import Event
from walle_core.stream.pattern import Trigger
from walle_core.stream.reference import ReferenceEngine
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


def realistic_triggers(count: int, seed: int = 0) -> dict[str, Trigger]:
    """``count`` distinct tasks as an app would declare them (see the module docstring)."""
    rng = random.Random(seed)
    tasks: dict[str, Trigger] = {"ipv_feature": Trigger(
        "page_enter[page=item_detail] ** page_exit[page=item_detail]", within_ms=7_200_000)}
    on_page = {"home": ("click",), "search": ("click",), "cart": ("click", "buy"),
               "item_detail": ("click", "favorite", "add_cart", "buy")}
    for page, actions in on_page.items():
        if page != "item_detail":
            tasks[f"visit_{page}"] = Trigger(f"page_enter[page={page}] ** page_exit[page={page}]",
                                             within_ms=7_200_000)
        tasks[f"deep_scroll_{page}"] = Trigger(  # once per visit: 5 scrolls in a row
            f"page_enter[page={page}] ** scroll[page={page}]{{5}}", within_ms=600_000)
        for action in actions:
            tasks[f"first_{action}_{page}"] = Trigger(
                f"page_enter[page={page}] ** {action}[page={page}]", within_ms=600_000)
            tasks[f"bounce_{action}_{page}"] = Trigger(
                f"{action}[page={page}] page_exit[page={page}]", within_ms=30_000)
    tasks.update({
        "session": Trigger("app_start ** app_end", within_ms=7_200_000),
        "session_buy": Trigger("app_start ** buy", within_ms=3_600_000),
        "search_click": Trigger("search ** click[page=search]", within_ms=60_000),
        "search_to_cart": Trigger("search ** add_cart[page=item_detail]", within_ms=600_000),
        "cart_abandon": Trigger("add_cart[page=item_detail]", not_followed_by="buy",
                                not_within_ms=600_000),
        "fav_then_cart": Trigger("favorite ** add_cart", within_ms=600_000),
        "buy_again": Trigger("buy ** buy", within_ms=3_600_000),
    })
    campaigns = [
        lambda: Trigger(f"page_enter[page=item_detail,args.item_id=i{rng.randrange(1000)}] ** "
                        f"{rng.choice(('add_cart', 'buy', 'favorite'))}", within_ms=600_000),
        lambda: (lambda item: Trigger(f"exposure[args.item_id=i{item}] ** "
                                      f"click[args.item_id=i{item}]", within_ms=300_000))(
            rng.randrange(1000)),
        lambda: Trigger(f"search[args.query=q{rng.randrange(50)}] ** "
                        f"{rng.choice(('click', 'add_cart', 'buy'))}", within_ms=600_000),
        lambda: Trigger(f"{rng.choice(('favorite', 'add_cart', 'buy'))}"
                        f"[args.item_id=i{rng.randrange(1000)}]"),
    ]
    while len(tasks) < count:
        trigger = rng.choice(campaigns)()
        if trigger not in tasks.values():
            tasks[f"campaign{len(tasks):03d}"] = trigger
    return dict(list(tasks.items())[:count])


MIXES = {"demanding": bench_triggers, "realistic": realistic_triggers}


def bench_events(users: int, minutes: float, seed: int = 0) -> list[Event]:
    from walle_core.stream.source import load_source

    source = load_source("synthetic").from_options(
        {"users": str(users), "minutes": str(minutes), "seed": str(seed)})
    return [e for e in source.events() if isinstance(e, dict)]


def _timed(fn: Any, events: list[Event]) -> float:
    gc.collect()
    gc.disable()
    try:
        began = time.thread_time()  # CPU time: a shared machine's other load does not count
        for event in events:
            fn(event)
        return time.thread_time() - began
    finally:
        gc.enable()


def _noop(event: Event) -> None:
    return None


def _ipv(match: Match) -> list[dict[str, Any]]:
    events = match.events
    return [{"user": match.key, "item_id": events[0]["args"].get("item_id"),
             "dwell_ms": events[-1]["ts"] - events[0]["ts"], "n": len(events)}]


def run_bench(tasks: int = 100, users: int = 2000, minutes: float = 20.0, repeat: int = 5,
              seed: int = 0, mix: str = "demanding",
              events: list[Event] | None = None) -> dict[str, Any]:
    """Run the three measurements on one trigger mix; return figures (medians) and its shape."""
    if events is None:
        events = bench_events(users, minutes, seed)
    triggers = MIXES[mix](tasks, seed)
    loop, trie, previous, runtime, p50, p99, fired = [], [], [], [], [], [], 0
    python: list[float] = []
    accelerated = TriggerEngine({}).accelerated
    for _ in range(repeat):
        loop.append(len(events) / _timed(_noop, events))
        previous.append(len(events) / _timed(ReferenceEngine(triggers).advance, events))
        engine = TriggerEngine(triggers)
        trie.append(len(events) / _timed(engine.advance, events))
        fired = engine.fired
        if accelerated:
            python.append(len(events) / _timed(TriggerEngine(triggers, accel=False).advance,
                                               events))
        stream_tasks = [StreamTask(name, trigger, on_match=_ipv) for name, trigger in
                        triggers.items()]
        rt = StreamRuntime(stream_tasks, checkpoint_every=50_000, measure_bytes=False)
        runtime.append(len(events) / _timed(rt.process, events))
        p50.append(rt.stats.percentile_ms(0.5) or 0.0)
        p99.append(rt.stats.percentile_ms(0.99) or 0.0)
    engine = TriggerEngine(triggers)
    return {
        "mix": mix, "events": len(events), "tasks": len(triggers),
        "trie": engine.trie.describe(), "triggers_fired": fired,
        "fires_per_event": fired / max(len(events), 1), "repeat": repeat,
        "loop_events_per_s": statistics.median(loop),
        "trie_events_per_s": statistics.median(trie),
        "trie_events_per_s_all": [round(x) for x in trie],
        "accelerated": accelerated,
        "python_trie_events_per_s": statistics.median(python) if python else None,
        "previous_trie_events_per_s": statistics.median(previous),
        "runtime_events_per_s": statistics.median(runtime),
        "latency_p50_ms": statistics.median(p50), "latency_p99_ms": statistics.median(p99),
    }
