"""One trie for all tasks' trigger patterns, and the per-key cursors that walk it.

Why a trie: a device runs many tasks, and most of their patterns start with the same few events
(``page_enter``, ``click``...). Merging every pattern variant into one prefix tree means an event
advances each live cursor once, whatever the number of tasks, and all tasks completing on one event
fire together in one batch.

Node kinds: a plain node is reached by matching its element; a node whose element loops
(``a+``) has an edge to itself; a *gap* node (``** b``) is entered without consuming an event from
its parent and stays put until ``b`` matches (skip-till-next-match). A node's edge table is indexed
by event id and filled lazily, so a node answers "where does id X lead?" with one dict lookup, and
an event whose id starts no pattern and whose user has no live cursor costs two dict lookups.

Cursor semantics: cursors live per key (user) as ``{node: (start_seq, start_ts)}``. When two
cursors reach the same node, the one with the latest start wins (shortest match), which bounds a
key's cursors by the number of trie nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from walle_core.stream.pattern import Atom, Element, Predicate, Trigger

Start = tuple[int, int]  # (per-key sequence number, event time ms) of a match's first event
Edge = tuple[Predicate | None, "Node"]
_TABLE_LIMIT = 4096  # lazily cached ids per node; cleared beyond this (guards odd id floods)


@dataclass(frozen=True)
class TaskEnd:
    """A task whose pattern completes at a node, with its own limits."""

    task: str
    within_ms: float
    negation: Atom | None = None
    not_within_ms: int = 0


class Node:
    """One trie node; ``path`` is its stable identity across recompiles."""

    __slots__ = ("path", "gap", "wake", "edges", "table", "tasks", "max_within", "closure",
                 "children")

    def __init__(self, path: str, gap: bool = False) -> None:
        self.path = path
        self.gap = gap
        self.wake: str | None = None  # gap nodes: the one id that can end the wait (None: any)
        self.edges: list[tuple[Atom, Node]] = []
        self.table: dict[str, tuple[Edge, ...]] = {}
        self.tasks: tuple[TaskEnd, ...] = ()
        self.max_within: float = 0.0
        self.closure: tuple[Node, ...] = ()  # gap nodes entered with no event consumed
        self.children: dict[str, Node] = {}

    def lookup(self, eid: str) -> tuple[Edge, ...]:
        """Edges an event with id ``eid`` may take (predicates still to check)."""
        found = self.table.get(eid)
        if found is None:
            found = tuple((atom.predicate(), target) for atom, target in self.edges
                          if atom.matches_id(eid))
            if len(self.table) >= _TABLE_LIMIT:
                self.table.clear()
            self.table[eid] = found
        return found

    def __repr__(self) -> str:
        return f"Node({self.path!r})"


@dataclass
class TrieStats:
    tasks: int = 0
    variants: int = 0
    nodes: int = 0
    shared_nodes_saved: int = 0  # elements that reused an existing node
    root_ids: list[str] = field(default_factory=list)


class TriggerTrie:
    """All tasks' trigger patterns compiled into one prefix tree."""

    def __init__(self, triggers: dict[str, Trigger]) -> None:
        self.triggers = dict(triggers)
        self.root = Node("")
        self.nodes: dict[str, Node] = {"": self.root}
        self.negations: dict[str, Atom] = {}
        self.stats = TrieStats(tasks=len(triggers))
        for task, trigger in sorted(self.triggers.items()):
            within = math.inf if trigger.within_ms is None else float(trigger.within_ms)
            negation = trigger.negation()
            if negation is not None:
                self.negations[task] = negation
            end = TaskEnd(task, within, negation, trigger.not_within_ms or 0)
            for variant in trigger.variants():
                self._insert(variant, end)
        self.stats.nodes = len(self.nodes)

    def _insert(self, variant: tuple[Element, ...], end: TaskEnd) -> None:
        self.stats.variants += 1
        node = self.root
        for element in variant:
            if element.gap:
                node = self._child(node, ".." + element.atom.key, gap=True, via=None)
                node.wake = element.atom.name if element.atom.is_exact else None
            node = self._child(node, element.key.removeprefix(".."), via=element)
            node.max_within = max(node.max_within, end.within_ms)
        if end not in node.tasks:
            node.tasks = node.tasks + (end,)

    def _child(self, parent: Node, key: str, gap: bool = False,
               via: Element | None = None) -> Node:
        child = parent.children.get(key)
        if child is not None:
            self.stats.shared_nodes_saved += 1
            return child
        child = Node(f"{parent.path}/{key}", gap=gap)
        parent.children[key] = child
        self.nodes[child.path] = child
        if via is None:  # gap node: entered by epsilon, leaves on its atom
            parent.closure = parent.closure + (child,)
        else:
            parent.edges.append((via.atom, child))
            if via.loop:
                child.edges.append((via.atom, child))
        if gap:
            child.max_within = math.inf  # tightened below when its target is known
        return child

    def finish(self) -> TriggerTrie:
        """Derive gap nodes' time limit from their targets (a gap waits as long as they allow)."""
        for node in self.nodes.values():
            if node.gap:
                node.max_within = max((t.max_within for _, t in node.edges), default=0.0)
        self.stats.root_ids = sorted({atom.name for atom, _ in self.root.edges})
        return self

    @classmethod
    def compile(cls, triggers: dict[str, Trigger]) -> TriggerTrie:
        return cls(triggers).finish()

    def describe(self) -> dict[str, Any]:
        return {"tasks": self.stats.tasks, "variants": self.stats.variants,
                "nodes": self.stats.nodes, "shared": self.stats.shared_nodes_saved,
                "root_ids": self.stats.root_ids}
