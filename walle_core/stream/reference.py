"""The previous trigger engine, kept verbatim as the behavioural reference.

Why it stays: :class:`walle_core.stream.triggers.TriggerEngine` is tuned for speed (lazy windows,
early exits); this is the straightforward per-cursor engine it started from. The differential
tests (``tests/stream/test_differential.py``) run both on random pattern sets and
event streams and require the same fires, windows and counts, and ``bench`` can time it as the
"before" figure. Not used on the hot path.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any

from walle_core.stream.events import Event
from walle_core.stream.pattern import Trigger
from walle_core.stream.trie import EventClass, Node, TriggerTrie
from walle_core.stream.triggers import _TRIM_AT, Cursors, Match, _Pending


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


class ReferenceEngine:
    """The per-cursor engine the memoised one replaced (same behaviour, slower)."""

    def __init__(self, triggers: dict[str, Trigger]) -> None:
        self.keys: dict[str, KeyState] = {}
        self.watermark = 0
        self.fired = 0
        self._heap: list[tuple[int, int, str, _Pending]] = []
        self._counter = itertools.count()
        self._set_trie(TriggerTrie.compile(triggers))

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
        landed: Cursors = {}
        active = state.active
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
        gaps = state.gaps
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
                    window: list[Event] | None = None
                    for end in ends:
                        if ts - start[1] > end.within_ms:
                            continue
                        if window is None:
                            window = buf[start[0] - state.base:]
                        match = Match(end.task, key, window, start[1], ts)
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
            if seen is None or len(match.events) < len(seen.events):
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
            del state.buf[: oldest - state.base]
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
