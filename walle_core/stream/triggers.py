"""The trigger engine: feeds events through the trie and fires matched tasks in batches.

This is the runtime's hot path, written for CPython. A key's cursors are split three ways so an
event only touches the cursors it can move:

* ``active``: cursors at plain nodes, which must move on the key's next event or die (strict
  contiguity), so all of them are visited;
* ``gaps``: cursors waiting in a gap (``** b``) for one exact id, indexed by that id, so an event
  wakes only the gaps waiting for it (one dict lookup otherwise);
* ``wild``: gaps waiting for a glob or any id, visited on every event of the key.

An event whose id starts no pattern, for a user with no live cursor, returns after two dict
lookups. Starts are shared ``(seq, ts)`` tuples, so moving a cursor allocates nothing. Each key
keeps a buffer of its events since its oldest live start, so a match carries its window (first to
last matched event, with everything between) without a second pass.

"Not followed by X within T" completes into a *pending* match that fires once the event-time
watermark passes its deadline with no X from that key, or is dropped when X arrives in time.
:meth:`TriggerEngine.flush` (end of a finite stream) fires what is still pending.

The state round-trips through :meth:`snapshot` / :meth:`restore` and survives :meth:`replace` of the
task set: cursors are keyed by node path, and a path means the same prefix in every compile.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Any

from walle_core.stream.dfa import Dfa, State, canonical, cursors
from walle_core.stream.events import Event
from walle_core.stream.pattern import Predicate, Trigger
from walle_core.stream.trie import Node, Start, TaskEnd, TriggerTrie

_TRIM_AT = 512  # buffer length beyond which a key's buffer is trimmed to its oldest live start
Cursors = dict[Node, Start]


class Match:
    """A completed trigger: the task, the key, and the matched window of that key's events."""

    __slots__ = ("task", "key", "events", "start_ts", "end_ts")

    def __init__(self, task: str, key: str, events: list[Event], start_ts: int,
                 end_ts: int) -> None:
        self.task = task
        self.key = key
        self.events = events
        self.start_ts = start_ts
        self.end_ts = end_ts

    def __repr__(self) -> str:
        return f"Match({self.task!r}, {self.key!r}, {len(self.events)} events)"


class _Pending:
    __slots__ = ("deadline", "end", "match", "done", "negation")

    def __init__(self, deadline: int, end: TaskEnd, match: Match, negation: Predicate) -> None:
        self.deadline = deadline
        self.end = end
        self.match = match
        self.done = False
        self.negation = negation


class KeyState:
    """Live state of one key: its interned cursor state, their starts, buffer, negations."""

    __slots__ = ("state", "starts", "deadline", "buf", "base", "pending")

    def __init__(self, state: State) -> None:
        self.state = state
        self.starts: list[Start] = []  # by rank: starts[0] is the oldest live match's first event
        self.deadline: float = math.inf  # no cursor can have expired before this event time
        self.buf: list[Event] = []
        self.base = 0  # sequence number of buf[0]
        self.pending: list[_Pending] = []

    def cursors(self) -> Cursors:
        active, gaps, wild = cursors(self.state, self.starts)
        out = dict(active)
        for waiting in gaps.values():
            out.update(waiting)
        out.update(wild)
        return out


def _set_deadline(state: KeyState) -> None:
    deadline = math.inf
    for rank, limit in state.state.lims:
        deadline = min(deadline, state.starts[rank][1] + limit)
    state.deadline = deadline


class TriggerEngine:
    """Advances every key's cursors through one :class:`TriggerTrie`, by memoised steps."""

    def __init__(self, triggers: dict[str, Trigger]) -> None:
        self.keys: dict[str, KeyState] = {}
        self.watermark = 0
        self.fired = 0
        self._heap: list[tuple[int, int, str, _Pending]] = []
        self._counter = itertools.count()
        self._set_trie(TriggerTrie.compile(triggers))

    def _set_trie(self, trie: TriggerTrie) -> None:
        self.trie = trie
        self.dfa = Dfa(trie)  # a new task set: a new memo (states name the old trie's nodes)
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
        hits: tuple[Node, ...] | None = None
        if cls.keyed:  # campaign-style starts: one index lookup per argument name
            args = event["args"]
            for name, index in cls.keyed:
                found = index.get(str(args.get(name)))
                if found:
                    hits = found if hits is None else hits + found
        if state is None:
            if not cls.starts and hits is None:
                return fired  # the fast path: nothing live for this user, nothing starts here
            state = self.keys[key] = KeyState(self.dfa.empty)
        buf = state.buf
        seq = state.base + len(buf)
        buf.append(event)
        if ts > state.deadline:
            self._prune(state, eid, ts)  # rare: some cursor may have run out of time
        cur = state.state
        entry = cur.next.get(cls)
        if entry is None:
            entry = self.dfa.entry(cur, cls)
        step = entry.step
        if step is None:  # user/args predicates or campaign hits decide this one
            checks = entry.checks
            sub = (tuple([c for c in checks if c(event)]) if checks else (), hits)
            step = entry.sub.get(sub)
            if step is None:
                step = entry.sub[sub] = self.dfa.step(cur, cls, sub[0], hits)
        if state.pending and cls.cancels:
            self._cancel(state, event, ts)
        old = state.starts
        if step.fires:
            count = 0
            for end, rank in step.fires:
                start = (seq, ts) if rank < 0 else old[rank]
                if ts - start[1] > end.within_ms:
                    continue
                match = Match(end.task, key, buf[start[0] - state.base:], start[1], ts)
                if end.negation is not None:
                    self._add_pending(key, state, _Pending(
                        ts + end.not_within_ms, end, match, self._negations[end.task]))
                    continue
                if fired is None:
                    fired = [match]
                else:
                    fired.append(match)
                count += 1
            self.fired += count
            if step.dup:
                dup = True
        nxt = step.state
        perm = step.perm
        if perm is not None or nxt is not cur:
            state.state = nxt
            if perm is not None:
                old.append((seq, ts))
                old = state.starts = [old[i] for i in perm]
            deadline = math.inf
            for rank, limit in nxt.lims:
                if old[rank][1] + limit < deadline:
                    deadline = old[rank][1] + limit
            state.deadline = deadline  # as _set_deadline, inlined
        if dup and step.landed and fired is not None and len(fired) > 1:
            fired = self._one_per_task(fired)
        if nxt.empty:
            if not state.pending:
                del self.keys[key]
            else:
                state.base = seq + 1
                state.buf = []
        elif len(buf) > _TRIM_AT:
            self._trim(state)
        return fired

    def _prune(self, state: KeyState, eid: str, ts: int) -> None:
        """Drop the cursors this event would find expired (those it visits), re-intern the rest."""
        active, gaps, wild = cursors(state.state, state.starts)
        active = {n: s for n, s in active.items() if ts - s[1] <= n.max_within}
        wild = {n: s for n, s in wild.items() if ts - s[1] <= n.max_within}
        if eid in gaps:
            gaps[eid] = {n: s for n, s in gaps[eid].items() if ts - s[1] <= n.max_within}
        state.state, state.starts = canonical(self.dfa, active, gaps, wild)
        _set_deadline(state)

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
        oldest = state.starts[0][0]
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
                if not state.pending and state.state.empty:
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
                         "cursors": [[n.path, s[0], s[1]] for n, s in state.cursors().items()]}
        return {"watermark": self.watermark, "fired": self.fired, "keys": keys}

    def restore(self, snap: dict[str, Any]) -> None:
        """Load a :meth:`snapshot` into this engine's current trie."""
        self._load(snap, self.trie)

    def _load(self, snap: dict[str, Any], trie: TriggerTrie) -> None:
        self._set_trie(trie)
        self.keys = {}
        self._heap = []
        self.watermark = snap.get("watermark", 0)
        self.fired = snap.get("fired", 0)
        ends = {end.task: end for node in trie.nodes.values() for end in node.tasks}
        for key, data in snap.get("keys", {}).items():
            state = KeyState(self.dfa.empty)
            state.base = data["base"]
            state.buf = list(data["buf"])
            active: Cursors = {}
            gaps: dict[str, Cursors] = {}
            wild: Cursors = {}
            for path, seq, ts in data["cursors"]:
                node = trie.nodes.get(path)
                if node is None:
                    continue  # its pattern is gone with the task that declared it
                if node.gap:
                    waiting = wild if node.wake is None else gaps.setdefault(node.wake, {})
                    waiting[node] = (seq, ts)
                elif node.edges:
                    active[node] = (seq, ts)
            state.state, state.starts = canonical(self.dfa, active, gaps, wild)
            _set_deadline(state)
            for deadline, task, events, start_ts, end_ts in data["pending"]:
                end = ends.get(task)
                if end is None or end.negation is None:
                    continue  # the task is gone or no longer waits on a negation
                match = Match(task, key, events, start_ts, end_ts)
                self._add_pending(key, state, _Pending(deadline, end, match,
                                                       self._negations[task]))
            if not state.state.empty or state.pending:
                self.keys[key] = state
