"""A key's cursors as one memoised state: the trie determinised lazily, per event class.

Why: moving each cursor one by one costs a few dict operations per cursor per event, which keeps
the per-cursor engine (:mod:`walle_core.stream.reference`) under 500,000 events/s. But which
cursors a key holds, and in which order their matches started, is a small discrete thing, and
where they go on an event is decided by the event's class (id, page) alone, so the whole move can
be computed once and cached:

    (state, event class) -> (next state, which starts survive where, tasks that complete)

A :class:`State` is the key's cursors with their starts replaced by *ranks* (0 = oldest start), in
the exact order the per-cursor engine would hold them (active, then gaps by wake id, then wild),
so a transition simulated once on ranks reproduces that engine's landing order, "later start wins"
choices, batch order and de-duplication. The key keeps the real ``(seq, ts)`` starts in a list by
rank; a :class:`Step` says how to rebuild that list (``perm``) and which ranks its completions
used. Predicates on ``user``/``args`` that the class cannot decide become an :class:`Entry`'s
``checks``: their results (and the campaign index hits) select a sub-step, so only patterns that
need them pay for them. Time limits depend on the data, not the state: the engine keeps each key's
earliest cursor deadline and takes the exact slow path (prune expired cursors, re-intern) when an
event passes it; completions' own ``within`` is checked when they fire.
"""

from __future__ import annotations

import math
from typing import Any

from walle_core.stream.trie import EventClass, Node, Start, TaskEnd, TriggerTrie

Ranked = tuple[tuple[Node, int], ...]
StateKey = tuple[Ranked, tuple[tuple[str, Ranked], ...], Ranked]  # active, gaps by wake, wild
NEW = -1  # a completion whose match starts on this very event
_STATE_LIMIT = 200_000  # interned states; the memo is dropped beyond this (pathological sets)


class State:
    """One interned cursor configuration; ``next`` memoises its transitions by event class."""

    __slots__ = ("key", "next", "lims", "ranks", "empty")

    def __init__(self, key: StateKey) -> None:
        self.key = key
        self.next: dict[EventClass, Entry] = {}
        best: dict[int, float] = {}
        ranks = 0
        for node, rank in _all(key):
            ranks = max(ranks, rank + 1)
            if node.max_within < best.get(rank, math.inf):
                best[rank] = node.max_within
        self.lims = tuple(best.items())  # (rank, tightest node limit) for finite limits
        self.ranks = ranks
        self.empty = ranks == 0


class Step:
    """The outcome of one transition (see the module docstring)."""

    __slots__ = ("state", "perm", "fires", "dup", "landed")

    def __init__(self, state: State, perm: tuple[int, ...] | None,
                 fires: tuple[tuple[TaskEnd, int], ...], dup: bool, landed: bool) -> None:
        self.state = state
        self.perm = perm  # new starts = [old_plus_new[i] for i in perm]; None: unchanged
        self.fires = fires  # (task end, rank in old starts or NEW), in batch order
        self.dup = dup  # a task ending here also ends elsewhere: de-duplicate the batch
        self.landed = landed  # some cursor moved or started (the batch is de-duplicated only then)


class Entry:
    """A state's transition on one class: a fixed step, or one chosen by per-event checks."""

    __slots__ = ("checks", "step", "sub")

    def __init__(self, checks: tuple[Any, ...] | None, step: Step | None) -> None:
        self.checks = checks
        self.step = step
        self.sub: dict[Any, Step] = {}


def _all(key: StateKey) -> Ranked:
    active, gaps, wild = key
    out = list(active)
    for _, waiting in gaps:
        out.extend(waiting)
    out.extend(wild)
    return tuple(out)


class Dfa:
    """The lazily built transition memo of one compiled trie."""

    def __init__(self, trie: TriggerTrie) -> None:
        self.trie = trie
        self.states: dict[StateKey, State] = {}
        self.empty = self.intern(((), (), ()))

    def intern(self, key: StateKey) -> State:
        found = self.states.get(key)
        if found is None:
            if len(self.states) >= _STATE_LIMIT:
                for state in self.states.values():
                    state.next.clear()
                self.states.clear()
            found = self.states[key] = State(key)
        return found

    def entry(self, state: State, cls: EventClass) -> Entry:
        """Build (and memoise) ``state``'s transition on ``cls``."""
        active, gaps, wild = state.key
        checks: list[Any] = []
        woken = dict(gaps).get(cls.eid, ())
        for node, _ in active + woken + wild:
            for check, _t in node.transition(cls):
                if check is not None and check not in checks:
                    checks.append(check)
        for check, _t in cls.starts:
            if check is not None and check not in checks:
                checks.append(check)
        if checks or cls.keyed:
            found = Entry(tuple(checks), None)
        else:
            found = Entry(None, self.step(state, cls, (), ()))
        state.next[cls] = found
        return found

    def step(self, state: State, cls: EventClass, passed: tuple[Any, ...],
             hits: tuple[Node, ...] | None) -> Step:
        """Simulate the per-cursor engine on ranks; ``passed``: the checks that held."""
        active, gaps, wild = state.key
        new = state.ranks  # the rank this event's own start would get
        landed: dict[Node, int] = {}

        def move(node: Node, rank: int) -> bool:
            moved = False
            for check, target in node.transition(cls):
                if check is None or check in passed:
                    moved = True
                    old = landed.get(target)
                    if old is None or old < rank:
                        landed[target] = rank
            return moved

        for node, rank in active:
            move(node, rank)
        gapd = {wake: dict(waiting) for wake, waiting in gaps}
        waiting = gapd.get(cls.eid)
        if waiting:
            kept = {node: rank for node, rank in waiting.items() if not move(node, rank)}
            if kept:
                gapd[cls.eid] = kept
            else:
                del gapd[cls.eid]
        wildd = {node: rank for node, rank in wild if not move(node, rank)}
        for check, target in cls.starts:
            if check is None or check in passed:
                landed[target] = new
        for target in hits or ():
            landed[target] = new
        actived: dict[Node, int] = {}
        fires: list[tuple[TaskEnd, int]] = []
        dup = False
        for node, rank in landed.items():
            if node.tasks:
                fires.extend((end, rank) for end in node.tasks)
                dup = dup or node.dup_ends
            if node.edges:
                actived[node] = rank
            for gap, wake in node.gap_slots:
                into = wildd if wake is None else gapd.setdefault(wake, {})
                old = into.get(gap)
                if old is None or old < rank:
                    into[gap] = rank
        used = sorted({r for d in (actived, wildd, *gapd.values()) for r in d.values()})
        remap = {old: i for i, old in enumerate(used)}
        key: StateKey = (
            tuple((n, remap[r]) for n, r in actived.items()),
            tuple((w, tuple((n, remap[r]) for n, r in d.items())) for w, d in gapd.items()),
            tuple((n, remap[r]) for n, r in wildd.items()))
        perm = None if used == list(range(new)) else tuple(used)
        return Step(self.intern(key), perm,
                    tuple((end, NEW if r == new else r) for end, r in fires), dup, bool(landed))


def canonical(dfa: Dfa, active: dict[Node, Start], gaps: dict[str, dict[Node, Start]],
              wild: dict[Node, Start]) -> tuple[State, list[Start]]:
    """Real cursors (``{node: (seq, ts)}``, in engine order) as an interned state + starts."""
    by_seq: dict[int, Start] = {}
    for cursors in (active, wild, *gaps.values()):
        for start in cursors.values():
            by_seq[start[0]] = start
    seqs = sorted(by_seq)
    rank = {seq: i for i, seq in enumerate(seqs)}
    key: StateKey = (
        tuple((n, rank[s[0]]) for n, s in active.items()),
        tuple((w, tuple((n, rank[s[0]]) for n, s in d.items())) for w, d in gaps.items() if d),
        tuple((n, rank[s[0]]) for n, s in wild.items()))
    return dfa.intern(key), [by_seq[seq] for seq in seqs]


def cursors(state: State, starts: list[Start]) -> tuple[
        dict[Node, Start], dict[str, dict[Node, Start]], dict[Node, Start]]:
    """The inverse of :func:`canonical`: the key's cursors with real starts."""
    active, gaps, wild = state.key
    return ({n: starts[r] for n, r in active},
            {w: {n: starts[r] for n, r in d} for w, d in gaps},
            {n: starts[r] for n, r in wild})
