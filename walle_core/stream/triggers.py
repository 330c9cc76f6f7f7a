"""The trigger engine: feeds events through the trie and fires matched tasks in batches.

This is the runtime's hot path, written for CPython: per-key state is one small object with
``__slots__``; an event for a user with no live cursor whose id starts no pattern returns after two
dict lookups; starts are shared tuples, so moving a cursor allocates nothing. Each key keeps a
buffer of its events since its oldest live cursor started, so a match carries its window (the
events from the first matched event to the last) without a second pass.

"Not followed by X within T" completes into a *pending* match that fires once the event-time
watermark passes its deadline with no X from that key, or is dropped when X arrives in time. At the
end of a finite stream, :meth:`TriggerEngine.flush` fires what is still pending.

The whole state (cursors by node path, buffers, pending matches) round-trips through
:meth:`snapshot` / :meth:`restore` and survives :meth:`replace` of the task set: cursors are keyed
by node path, and a path means the same prefix in every compile.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import Any

from walle_core.stream.events import Event
from walle_core.stream.pattern import Trigger
from walle_core.stream.trie import Node, Start, TaskEnd, TriggerTrie

_TRIM_AT = 512  # buffer length beyond which a key's buffer is trimmed to its oldest live start


@dataclass
class Match:
    """A completed trigger: the task, the key, and the matched window of that key's events."""

    task: str
    key: str
    events: list[Event]
    start_ts: int
    end_ts: int


class _Pending:
    __slots__ = ("deadline", "end", "match", "done")

    def __init__(self, deadline: int, end: TaskEnd, match: Match) -> None:
        self.deadline = deadline
        self.end = end
        self.match = match
        self.done = False


class KeyState:
    """Live state of one key: cursors, the event buffer behind them, pending negations."""

    __slots__ = ("cursors", "buf", "base", "pending")

    def __init__(self) -> None:
        self.cursors: dict[Node, Start] = {}
        self.buf: list[Event] = []
        self.base = 0  # sequence number of buf[0]
        self.pending: list[_Pending] = []


class TriggerEngine:
    """Advances every key's cursors through one :class:`TriggerTrie`."""

    def __init__(self, triggers: dict[str, Trigger]) -> None:
        self.trie = TriggerTrie.compile(triggers)
        self.keys: dict[str, KeyState] = {}
        self.watermark = 0
        self.fired = 0
        self._heap: list[tuple[int, int, str, _Pending]] = []
        self._counter = itertools.count()

    # -- hot path -----------------------------------------------------------------------------

    def advance(self, event: Event) -> list[Match] | None:
        """Feed one validated event; return the batch of matches it completes (or ``None``)."""
        ts: int = event["ts"]
        fired: list[Match] | None = None
        if ts > self.watermark:
            self.watermark = ts
            if self._heap and self._heap[0][0] < ts:
                fired = self._expire(ts)
        key: str = event["user"]
        state = self.keys.get(key)
        eid: str = event["id"]
        root = self.trie.root
        starts = root.table.get(eid)
        if starts is None:
            starts = root.lookup(eid)
        if state is None:
            if not starts:
                return fired
            state = self.keys[key] = KeyState()
        buf = state.buf
        seq = state.base + len(buf)
        buf.append(event)
        landed: dict[Node, Start] = {}
        stayed: dict[Node, Start] = {}
        for node, start in state.cursors.items():
            if ts - start[1] > node.max_within:
                continue  # expired: no task passing here allows a match this long
            moved = False
            table = node.table.get(eid)
            if table is None:
                table = node.lookup(eid)
            for pred, target in table:
                if pred is None or pred(event):
                    moved = True
                    old = landed.get(target)
                    if old is None or old[0] < start[0]:
                        landed[target] = start
            if not moved and node.gap:
                stayed[node] = start
        if starts:
            new_start: Start | None = None
            for pred, target in starts:
                if pred is None or pred(event):
                    if new_start is None:
                        new_start = (seq, ts)
                    landed[target] = new_start
        if state.pending:
            self._cancel(state, event, ts)
        cursors = stayed
        for node, start in landed.items():
            if node.tasks:
                fired = self._complete(node, start, key, state, ts, fired)
            if node.edges:
                old = cursors.get(node)
                if old is None or old[0] < start[0]:
                    cursors[node] = start
            for gap in node.closure:
                old = cursors.get(gap)
                if old is None or old[0] < start[0]:
                    cursors[gap] = start
        state.cursors = cursors
        if not cursors:
            if not state.pending:
                del self.keys[key]
            else:
                state.base = seq + 1
                state.buf = []
        elif len(buf) > _TRIM_AT:
            oldest = min(start[0] for start in cursors.values())
            if oldest > state.base:
                del buf[: oldest - state.base]
                state.base = oldest
        return fired

    def _complete(self, node: Node, start: Start, key: str, state: KeyState, ts: int,
                  fired: list[Match] | None) -> list[Match] | None:
        window: list[Event] | None = None
        for end in node.tasks:
            if ts - start[1] > end.within_ms:
                continue
            if window is None:
                window = state.buf[start[0] - state.base:]
            match = Match(end.task, key, window, start[1], ts)
            if end.negation is not None:
                pending = _Pending(ts + end.not_within_ms, end, match)
                state.pending.append(pending)
                heapq.heappush(self._heap, (pending.deadline, next(self._counter), key, pending))
                continue
            if fired is None:
                fired = []
            fired.append(match)
            self.fired += 1
        return fired

    def _cancel(self, state: KeyState, event: Event, ts: int) -> None:
        keep = []
        for pending in state.pending:
            negation = pending.end.negation
            if negation is not None and ts <= pending.deadline and negation.matches(event):
                pending.done = True
            elif not pending.done:
                keep.append(pending)
        state.pending = keep

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
                if not state.pending and not state.cursors:
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
        gone = 0
        now = self.watermark
        for key in list(self.keys):
            state = self.keys[key]
            state.cursors = {n: s for n, s in state.cursors.items() if now - s[1] <= n.max_within}
            if not state.cursors and not state.pending:
                del self.keys[key]
                gone += 1
        return gone

    def replace(self, triggers: dict[str, Trigger]) -> None:
        """Swap the task set (add, remove, update) keeping every still-meaningful cursor."""
        self._load(self.snapshot(), TriggerTrie.compile(triggers))

    # -- persistence ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The engine's state as JSON-ready data (windows are stored as buffer offsets)."""
        keys: dict[str, Any] = {}
        for key, state in self.keys.items():
            pending = [[p.deadline, p.end.task, p.match.events, p.match.start_ts, p.match.end_ts]
                       for p in state.pending if not p.done]
            keys[key] = {"base": state.base, "buf": state.buf, "pending": pending,
                         "cursors": [[n.path, s[0], s[1]] for n, s in state.cursors.items()]}
        return {"watermark": self.watermark, "fired": self.fired, "keys": keys}

    def restore(self, snap: dict[str, Any]) -> None:
        """Load a :meth:`snapshot` into this engine's current trie."""
        self._load(snap, self.trie)

    def _load(self, snap: dict[str, Any], trie: TriggerTrie) -> None:
        self.trie = trie
        self.keys = {}
        self._heap = []
        self.watermark = snap.get("watermark", 0)
        self.fired = snap.get("fired", 0)
        ends = {end.task: end for node in trie.nodes.values() for end in node.tasks}
        for key, data in snap.get("keys", {}).items():
            state = KeyState()
            state.base = data["base"]
            state.buf = list(data["buf"])
            for path, seq, ts in data["cursors"]:
                node = trie.nodes.get(path)
                if node is not None and (node.edges or node.gap):
                    state.cursors[node] = (seq, ts)
            for deadline, task, events, start_ts, end_ts in data["pending"]:
                end = ends.get(task)
                if end is None or end.negation is None:
                    continue  # the task is gone or no longer waits on a negation
                pending = _Pending(deadline, end, Match(task, key, events, start_ts, end_ts))
                state.pending.append(pending)
                heapq.heappush(self._heap, (deadline, next(self._counter), key, pending))
            if state.cursors or state.pending:
                self.keys[key] = state

    def live_cursors(self) -> int:
        return sum(len(state.cursors) for state in self.keys.values())
