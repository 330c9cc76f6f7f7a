"""The trigger engine: feeds events through the trie and fires matched tasks in batches.

This is the runtime's hot path, written for CPython. A key's cursors are split three ways so an
event only touches the cursors it can move:

* ``active``: cursors at plain nodes, which must move on the key's next event or die (strict
  contiguity), so all of them are visited;
* ``gaps``: cursors waiting in a gap (``** b``) for one exact id, indexed by that id, so an event
  wakes only the gaps waiting for it (one dict lookup otherwise);
* ``wild``: gaps waiting for a glob or any id, visited on every event of the key.

An event whose id starts no pattern, for a user with no live cursor, returns after two dict
lookups; one that moves none of a live user's cursors and starts nothing returns before any
landing work. Starts are shared ``(seq, ts)`` tuples, so moving a cursor allocates nothing. Each
key keeps a buffer of its events since its oldest live start, so a match carries its window
(first to last matched event, with everything between) without a second pass; the window is
sliced only when a handler reads ``match.events`` (buffers are only appended to or replaced,
never cut in place, so a match's view stays valid).

Why not memoised whole-key states (a lazily built DFA over each key's cursor set)? It was built
and measured: the gap cursors (``a ** b``) a key holds combine freely, so the 190,909 bench
events produced 62,000-85,000 distinct states, nearly one new state per 2-3 events, and it ran
5-7x slower than this engine. :mod:`walle_core.stream.reference` keeps the engine before tuning
as the oracle of ``tests/stream/test_differential.py``.

"Not followed by X within T" completes into a *pending* match that fires once the event-time
watermark passes its deadline with no X from that key, or is dropped when X arrives in time.
:meth:`TriggerEngine.flush` (end of a finite stream) fires what is still pending.

The state round-trips through :meth:`snapshot` / :meth:`restore` and survives :meth:`replace` of the
task set: cursors are keyed by node path, and a path means the same prefix in every compile.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any

from walle_core.stream.events import Event
from walle_core.stream.pattern import Predicate, Trigger
from walle_core.stream.trie import EventClass, Node, Start, TaskEnd, TriggerTrie

_TRIM_AT = 512  # buffer length beyond which a key's buffer is trimmed to its oldest live start
Cursors = dict[Node, Start]
ACCEL_GROUP = "walle.stream_accel"  # entry points: ``make_advance(engine) -> advance(event)``
_accel_cache: list[Any] = []


def accelerator() -> Any | None:
    """The installed ``walle.stream_accel`` accelerator's ``make_advance``, or ``None``.

    ``WALLE_STREAM_ACCEL=0`` turns it off. A plugin that fails to load is ignored (the pure-Python
    engine runs), so a broken build never stops the runtime.
    """
    import os

    if os.environ.get("WALLE_STREAM_ACCEL", "1") in ("0", "off", "no", "false"):
        return None
    if not _accel_cache:
        from importlib.metadata import entry_points

        found = None
        for entry in sorted(entry_points(group=ACCEL_GROUP), key=lambda e: e.name):
            try:
                found = entry.load()
                break
            except Exception:  # noqa: BLE001 - a broken plugin means: run the Python engine
                continue
        _accel_cache.append(found)
    return _accel_cache[0]


class Match:
    """A completed trigger: the task, the key, and the matched window of that key's events.

    The window is sliced from the key's buffer only when ``events`` is first read (the engine
    never mutates a buffer in place before that: it appends, or replaces the list), so matches
    that nobody inspects cost no copy.
    """

    __slots__ = ("task", "key", "_buf", "_lo", "_hi", "_events", "start_ts", "end_ts")

    def __init__(self, task: str, key: str, events: list[Event], start_ts: int,
                 end_ts: int, lo: int = 0, hi: int = -1) -> None:
        self.task = task
        self.key = key
        self._buf = events
        self._lo = lo
        self._hi = hi  # < 0: ``events`` is the window itself
        self._events: list[Event] | None = events if hi < 0 else None
        self.start_ts = start_ts
        self.end_ts = end_ts

    @property
    def events(self) -> list[Event]:
        found = self._events
        if found is None:
            found = self._events = self._buf[self._lo:self._hi]
        return found

    def window_len(self) -> int:
        """``len(self.events)`` without slicing the window."""
        return len(self._buf) if self._hi < 0 else self._hi - self._lo

    def __repr__(self) -> str:
        return f"Match({self.task!r}, {self.key!r}, {self.window_len()} events)"


class _Pending:
    __slots__ = ("deadline", "end", "match", "done", "negation")

    def __init__(self, deadline: int, end: TaskEnd, match: Match, negation: Predicate) -> None:
        self.deadline = deadline
        self.end = end
        self.match = match
        self.done = False
        self.negation = negation


class KeyState:
    """Live state of one key: its cursors, the event buffer behind them, pending negations."""

    __slots__ = ("active", "gaps", "wild", "buf", "base", "pending")

    def __init__(self) -> None:
        self.active: Cursors = {}
        self.gaps: dict[str, Cursors] = {}
        self.wild: Cursors = {}
        self.buf: list[Event] = []
        self.base = 0  # sequence number of buf[0]
        self.pending: list[_Pending] = []

    def cursors(self) -> Cursors:
        out = dict(self.active)
        for waiting in self.gaps.values():
            out.update(waiting)
        out.update(self.wild)
        return out


class TriggerEngine:
    """Advances every key's cursors through one :class:`TriggerTrie`.

    With an accelerator installed (``walle.stream_accel``, e.g. ``walle-stream-accel``) and
    ``accel`` left on, ``advance`` is its compiled version of the method below, working on the
    same state; the method stays the fallback (``accel=False`` or ``WALLE_STREAM_ACCEL=0``).
    """

    def __init__(self, triggers: dict[str, Trigger], accel: bool = True) -> None:
        self.keys: dict[str, KeyState] = {}
        self.watermark = 0
        self.fired = 0
        self._heap: list[tuple[int, int, str, _Pending]] = []
        self._counter = itertools.count()
        self._set_trie(TriggerTrie.compile(triggers))
        make = accelerator() if accel else None
        self.accelerated = False
        if make is not None:
            try:
                self.advance = make(self)  # type: ignore[method-assign]
                self.accelerated = True
            except Exception:  # noqa: BLE001 - e.g. an accelerator built for another layout
                pass

    def _set_trie(self, trie: TriggerTrie) -> None:
        self.trie = trie
        self._classes = trie.classes
        self._negations = {task: atom.matcher() for task, atom in trie.negations.items()}

    # -- hot path -----------------------------------------------------------------------------

    def advance(self, event: Event) -> list[Match] | None:
        """Feed one validated event; return the batch of matches it completes (or ``None``)."""
        ts: int = event["ts"]
        fired: list[Match] | None = None
        dup = False  # may the batch hold one task twice? (then keep its shortest window)
        if ts > self.watermark:
            self.watermark = ts
            if self._heap and self._heap[0][0] < ts:
                fired = self._expire(ts)
                dup = fired is not None
        eid: str = event["id"]
        page = event["page"]
        pages = self._classes.get(eid)
        cls = pages.get(page) if pages is not None else None
        if cls is None:
            cls = self.trie.event_class(eid, page)
        key: str = event["user"]
        state = self.keys.get(key)
        starts = cls.starts
        hits: tuple[Node, ...] | None = None
        if cls.keyed:  # campaign-style starts: one index lookup per argument name
            args = event["args"]
            for name, index in cls.keyed:
                found = index.get(str(args.get(name)))
                if found:
                    hits = found if hits is None else hits + found
        if state is None:
            if not starts and hits is None:
                return fired  # the fast path: nothing live for this user, nothing starts here
            state = self.keys[key] = KeyState()
        buf = state.buf
        seq = state.base + len(buf)
        buf.append(event)
        active = state.active
        gaps = state.gaps
        if not (active or starts or hits or state.wild or (gaps and eid in gaps)):
            # the common case for a live user: no cursor this event can move, nothing starts
            if state.pending and cls.cancels:
                self._cancel(state, event, ts)
            if not gaps:
                if not state.pending:
                    del self.keys[key]
                else:
                    state.base = seq + 1
                    state.buf = []
            elif len(buf) > _TRIM_AT:
                self._trim(state)
            return fired
        landed: Cursors = {}
        if active:
            state.active = {}
            for node, start in active.items():
                if ts - start[1] > node.max_within:
                    continue  # expired: no task passing here allows a match this long
                edges = node.trans.get(cls)
                if edges is None:
                    edges = node.transition(cls)
                for check, target in edges:
                    if check is not None:
                        to = check(event)
                        if to is None:
                            continue
                        target = to
                    old = landed.get(target)
                    if old is None or old[0] < start[0]:
                        landed[target] = start
        if gaps:
            waiting = gaps.get(eid)
            if waiting:
                kept = self._wake(waiting, cls, event, ts, landed)
                if kept:
                    gaps[eid] = kept
                else:
                    del gaps[eid]
        if state.wild:
            state.wild = self._wake(state.wild, cls, event, ts, landed)
        if starts or hits:
            new_start = (seq, ts)
            for check, target in starts:
                if check is None:
                    landed[target] = new_start
                else:
                    to = check(event)
                    if to is not None:
                        landed[to] = new_start
            if hits:
                for target in hits:
                    landed[target] = new_start
        if state.pending and cls.cancels:
            self._cancel(state, event, ts)
        if landed:
            active = state.active
            count = 0
            for node, start in landed.items():
                ends = node.tasks
                if ends:  # completion, inlined: a third of events complete something
                    for end in ends:
                        if ts - start[1] > end.within_ms:
                            continue
                        # the window is sliced lazily, on first read of ``match.events``
                        match = Match(end.task, key, buf, start[1], ts, start[0] - state.base,
                                      len(buf))
                        if end.negation is not None:
                            self._add_pending(key, state, _Pending(
                                ts + end.not_within_ms, end, match, self._negations[end.task]))
                            continue
                        if fired is None:
                            fired = [match]
                        else:
                            fired.append(match)
                        count += 1
                    if node.dup_ends:
                        dup = True
                if node.edges:
                    active[node] = start
                if node.gap_slots:
                    for gap, wake in node.gap_slots:
                        if wake is None:
                            waiting = state.wild
                        else:
                            waiting = gaps.get(wake)
                            if waiting is None:
                                waiting = gaps[wake] = {}
                        old = waiting.get(gap)
                        if old is None or old[0] < start[0]:
                            waiting[gap] = start
            self.fired += count
            if dup and fired is not None and len(fired) > 1:
                fired = self._one_per_task(fired)
        if not (state.active or gaps or state.wild):
            if not state.pending:
                del self.keys[key]
            else:
                state.base = seq + 1
                state.buf = []
        elif len(buf) > _TRIM_AT:
            self._trim(state)
        return fired

    @staticmethod
    def _wake(waiting: Cursors, cls: EventClass, event: Event, ts: int,
              landed: Cursors) -> Cursors:
        """Move the gap cursors that ``event`` ends; return those that keep waiting."""
        kept: Cursors = {}
        for node, start in waiting.items():
            if ts - start[1] > node.max_within:
                continue
            edges = node.trans.get(cls)
            if edges is None:
                edges = node.transition(cls)
            moved = False
            for check, target in edges:
                if check is not None:
                    to = check(event)
                    if to is None:
                        continue
                    target = to
                moved = True
                old = landed.get(target)
                if old is None or old[0] < start[0]:
                    landed[target] = start
            if not moved:
                kept[node] = start
        return kept

    def _one_per_task(self, fired: list[Match]) -> list[Match]:
        """A task fires at most once per key and event: with its shortest window."""
        best: dict[tuple[str, str], Match] = {}
        for match in fired:
            seen = best.get((match.task, match.key))
            if seen is None or match.window_len() < seen.window_len():
                best[(match.task, match.key)] = match
        self.fired -= len(fired) - len(best)
        return list(best.values())

    def _add_pending(self, key: str, state: KeyState, pending: _Pending) -> None:
        state.pending.append(pending)
        heapq.heappush(self._heap, (pending.deadline, next(self._counter), key, pending))

    @staticmethod
    def _cancel(state: KeyState, event: Event, ts: int) -> None:
        for pending in state.pending:
            if ts <= pending.deadline and pending.negation(event):
                pending.done = True
        state.pending = [p for p in state.pending if not p.done]

    @staticmethod
    def _trim(state: KeyState) -> None:
        oldest = min(start[0] for start in state.cursors().values())
        if oldest > state.base:
            state.buf = state.buf[oldest - state.base:]  # a new list: lazy windows keep theirs
            state.base = oldest

    def _expire(self, now: int) -> list[Match] | None:
        fired: list[Match] | None = None
        heap = self._heap
        while heap and heap[0][0] < now:
            _, _, key, pending = heapq.heappop(heap)
            if pending.done:
                continue
            pending.done = True
            state = self.keys.get(key)
            if state is not None:
                state.pending = [p for p in state.pending if p is not pending]
                if not (state.pending or state.active or state.gaps or state.wild):
                    del self.keys[key]
            if fired is None:
                fired = []
            fired.append(pending.match)
            self.fired += 1
        return fired

    # -- lifecycle ------------------------------------------------------------------------------

    def flush(self) -> list[Match]:
        """End of stream: time runs out for every pending "not followed by" match, so they fire."""
        return self._expire(2**62) or []

    def evict_expired(self) -> int:
        """Drop cursors no task could still complete at the current watermark; returns keys gone."""
        snap = self.snapshot()
        before = len(self.keys)
        now = self.watermark
        for data in snap["keys"].values():
            data["cursors"] = [c for c in data["cursors"]
                               if now - c[2] <= self.trie.nodes[c[0]].max_within]
        self._load(snap, self.trie)
        return before - len(self.keys)

    def replace(self, triggers: dict[str, Trigger]) -> None:
        """Swap the task set (add, remove, update) keeping every still-meaningful cursor."""
        self._load(self.snapshot(), TriggerTrie.compile(triggers))

    def live_cursors(self) -> int:
        return sum(len(state.cursors()) for state in self.keys.values())

    # -- persistence ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The engine's state as JSON-ready data."""
        keys: dict[str, Any] = {}
        for key, state in self.keys.items():
            pending = [[p.deadline, p.end.task, p.match.events, p.match.start_ts, p.match.end_ts]
                       for p in state.pending if not p.done]
            keys[key] = {"base": state.base, "buf": state.buf, "pending": pending,
                         "cursors": [[n.path, s[0], s[1], [list(b) for b in n.env]] if n.env
                                     else [n.path, s[0], s[1]]
                                     for n, s in state.cursors().items()]}
        return {"watermark": self.watermark, "fired": self.fired, "keys": keys}

    def restore(self, snap: dict[str, Any]) -> None:
        """Load a :meth:`snapshot` into this engine's current trie."""
        self._load(snap, self.trie)

    def _load(self, snap: dict[str, Any], trie: TriggerTrie) -> None:
        self._set_trie(trie)
        trie.views = {}  # bound views are interned again from the cursors that still use them
        self.keys = {}
        self._heap = []
        self.watermark = snap.get("watermark", 0)
        self.fired = snap.get("fired", 0)
        ends = {end.task: end for node in trie.nodes.values() for end in node.tasks}
        for key, data in snap.get("keys", {}).items():
            state = KeyState()
            state.base = data["base"]
            state.buf = list(data["buf"])
            for path, seq, ts, *bound in data["cursors"]:
                node = trie.nodes.get(path)
                if node is None:
                    continue  # its pattern is gone with the task that declared it
                if bound:
                    node = trie.view(node, tuple((name, value) for name, value in bound[0]))
                if node.gap:
                    waiting = state.wild if node.wake is None else state.gaps.setdefault(
                        node.wake, {})
                    waiting[node] = (seq, ts)
                elif node.edges:
                    state.active[node] = (seq, ts)
            for deadline, task, events, start_ts, end_ts in data["pending"]:
                end = ends.get(task)
                if end is None or end.negation is None:
                    continue  # the task is gone or no longer waits on a negation
                match = Match(task, key, events, start_ts, end_ts)
                self._add_pending(key, state, _Pending(deadline, end, match,
                                                       self._negations[task]))
            if state.active or state.gaps or state.wild or state.pending:
                self.keys[key] = state
