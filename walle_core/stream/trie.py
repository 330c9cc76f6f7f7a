"""One trie for all tasks' trigger patterns, and the per-key cursors that walk it.

Why a trie: a device runs many tasks, and most of their patterns start with the same few events
(``page_enter``, ``click``...). Merging every pattern variant into one prefix tree means an event
advances each live cursor once, whatever the number of tasks, and all tasks completing on one event
fire together in one batch.

Node kinds: a plain node is reached by matching its element; a node whose element loops
(``a+``) has an edge to itself; a *gap* node (``** b``) is entered without consuming an event from
its parent and stays put until ``b`` matches (skip-till-next-match).

Event classes: what a step checks is almost always decided by the event's id and page alone
(``click[page=home]``). Each distinct (id, page) pair gets one :class:`EventClass`, and a node's
transition table is keyed by it and filled lazily: "where does this event lead from here?" is one
dict lookup that yields the targets with the id/page predicates already decided, leaving only
predicates on ``user`` or ``args`` to run per event. An event whose class starts no pattern, for
a user with no live cursor, costs three dict lookups.

Cursor semantics: cursors live per key (user) as ``{node: (start_seq, start_ts)}``. When two
cursors reach the same node, the one with the latest start wins (shortest match), which bounds a
key's cursors by the number of trie nodes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from walle_core.stream.pattern import (
    Atom,
    Element,
    Trigger,
    compile_check,
    compile_preds,
    field_getter,
)

Start = tuple[int, int]  # (per-key sequence number, event time ms) of a match's first event
Env = tuple[tuple[str, str], ...]  # a cursor's variable bindings, in the order they were bound
# (check, target): ``check`` is ``None`` (always taken) or returns the node to land on or ``None``
Check = Callable[[dict[str, Any]], "Node | None"]
Edge = tuple[Check | None, "Node"]
_CLASS_LIMIT = 4096  # cached (id, page) classes; all caches are cleared beyond this (odd floods)


@dataclass(frozen=True)
class TaskEnd:
    """A task whose pattern completes at a node, with its own limits."""

    task: str
    within_ms: float
    negation: Atom | None = None
    not_within_ms: int = 0


class Node:
    """One trie node; ``path`` is its stable identity across recompiles."""

    __slots__ = ("path", "gap", "wake", "edges", "trans", "tasks", "max_within", "closure",
                 "children", "gap_slots", "dup_ends", "env", "trie", "ends")

    def __init__(self, path: str, gap: bool = False, trie: TriggerTrie | None = None,
                 env: Env = ()) -> None:
        self.path = path
        self.trie = trie
        self.env = env  # variable bindings: a bound *view* of the node at ``path`` (see view())
        self.gap = gap
        self.wake: str | None = None  # gap nodes: the one id that can end the wait (None: any)
        self.edges: list[tuple[Atom, Node]] = []
        self.trans: dict[EventClass, tuple[Edge, ...]] = {}
        self.tasks: tuple[TaskEnd, ...] = ()
        self.max_within: float = 0.0
        self.closure: tuple[Node, ...] = ()  # gap nodes entered with no event consumed
        self.children: dict[str, Node] = {}
        self.gap_slots: tuple[tuple[Node, str | None], ...] = ()  # closure with each wake id
        self.dup_ends = False  # a task ending here also ends elsewhere (may fire twice at once)
        # ``tasks`` flattened for compiled engines: (task, within_ms, has negation, end)
        self.ends: tuple[tuple[str, float, bool, TaskEnd], ...] = ()

    def transition(self, cls: EventClass) -> tuple[Edge, ...]:
        """Edges an event of class ``cls`` takes from here (residual predicates still to check)."""
        found = self.trans.get(cls)
        if found is None:
            edges = []
            assert self.trie is not None
            for atom, target in self.edges:
                ok, rest = atom.residual(cls.eid, cls.page)
                if ok:
                    edges.append(self.trie.edge(rest, target, self.env))
            found = self.trans[cls] = tuple(edges)
        return found

    def __repr__(self) -> str:
        return f"Node({self.path!r}{', ' + repr(self.env) if self.env else ''})"


class EventClass:
    """One distinct (id, page) pair: the unit by which the trie's transitions are cached."""

    __slots__ = ("eid", "page", "starts", "keyed", "cancels")

    def __init__(self, eid: str, page: Any, cancels: bool) -> None:
        self.eid = eid
        self.page = page
        self.starts: tuple[Edge, ...] = ()  # the root's transition: where a match may begin
        # root edges whose only check left is ``args.<name>=<value>``, grouped by name and
        # indexed by value, so 50 campaign tasks on 50 items cost one lookup, not 50 checks
        self.keyed: tuple[tuple[str, dict[str, tuple[Node, ...]]], ...] = ()
        self.cancels = cancels  # may match some task's "not followed by"

    def __repr__(self) -> str:
        return f"EventClass({self.eid!r}, {self.page!r})"


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
        self.root = Node("", trie=self)
        self.views: dict[tuple[Node, Env], Node] = {}
        self.nodes: dict[str, Node] = {"": self.root}
        self.negations: dict[str, Atom] = {}
        self.classes: dict[str, dict[Any, EventClass]] = {}  # id -> page -> class
        self._class_count = 0
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
        atoms = self.negations.values()
        self._neg_any = any(not atom.is_exact for atom in atoms)
        self._neg_ids = {atom.name for atom in atoms if atom.is_exact}

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
        child = Node(f"{parent.path}/{key}", gap=gap, trie=self)
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
        ends: dict[str, int] = {}
        for node in self.nodes.values():
            node.gap_slots = tuple((gap, gap.wake) for gap in node.closure)
            node.ends = tuple((end.task, float(end.within_ms), end.negation is not None, end)
                              for end in node.tasks)
            for end in node.tasks:
                ends[end.task] = ends.get(end.task, 0) + 1
        for node in self.nodes.values():
            node.dup_ends = any(ends[end.task] > 1 for end in node.tasks)
        return self

    def view(self, node: Node, env: Env) -> Node:
        """``node`` with variable bindings ``env``: one interned object per (node, env).

        Cursors are keyed by node object, so a view is how two matches of the same prefix with
        different bindings (two items' visits) live side by side, while two with the same bindings
        still meet on one key (later start wins). A view shares its node's edges, tasks and limits;
        its transitions are its own, with the bound values substituted into the checks.
        """
        if not env:
            return node
        found = self.views.get((node, env))
        if found is None:
            found = Node(node.path, node.gap, self, env)
            found.wake = node.wake
            found.edges = node.edges
            found.tasks = node.tasks
            found.ends = node.ends
            found.max_within = node.max_within
            found.dup_ends = bool(node.tasks)  # two bindings may end one task on one event
            found.children = node.children
            found.closure = tuple(self.view(gap, env) for gap in node.closure)
            found.gap_slots = tuple((gap, gap.wake) for gap in found.closure)
            self.views[(node, env)] = found
        return found

    def edge(self, rest: tuple[tuple[str, str, str], ...], target: Node, env: Env) -> Edge:
        """The edge to ``target`` for predicates ``rest`` left after the event class, under ``env``.

        Variables already bound become literal comparisons; unbound ones are bound from the event
        (the field must be present) and the check returns the view with the extended bindings.
        """
        bound = dict(env)
        literal: list[tuple[str, str, str]] = []
        binders: list[tuple[Callable[[dict[str, Any]], Any], str]] = []
        for field_name, op, value in rest:
            if not value.startswith("$"):
                literal.append((field_name, op, value))
            elif value[1:] in bound:
                literal.append((field_name, op + "$", bound[value[1:]]))
            else:
                binders.append((field_getter(field_name), value[1:]))
        dest = self.view(target, env)
        if not binders:
            return compile_check(tuple(literal), dest), dest
        pred = compile_preds(tuple(literal))

        def bind(event: dict[str, Any]) -> Node | None:
            if pred is not None and not pred(event):
                return None
            new = dict(env)
            for get, name in binders:
                found = get(event)
                if found is None:
                    return None
                value = str(found)
                if new.setdefault(name, value) != value:
                    return None  # bound twice in one step, to different values
            return self.view(target, tuple(new.items()))

        return bind, dest

    def _new_class(self, eid: str, page: Any) -> EventClass:
        found = EventClass(eid, page, self._neg_any or eid in self._neg_ids)
        starts: list[Edge] = []
        keyed: dict[str, dict[str, list[Node]]] = {}
        for atom, target in self.root.edges:
            ok, rest = atom.residual(eid, page)
            if not ok:
                continue
            if (len(rest) == 1 and rest[0][0].startswith("args.") and rest[0][1] == "="
                    and not rest[0][2].startswith("$")):
                name = rest[0][0][5:]
                keyed.setdefault(name, {}).setdefault(rest[0][2], []).append(target)
            else:
                starts.append(self.edge(rest, target, ()))
        found.starts = tuple(starts)
        found.keyed = tuple((name, {value: tuple(targets) for value, targets in index.items()})
                            for name, index in keyed.items())
        self.root.trans[found] = found.starts
        return found

    def event_class(self, eid: str, page: Any) -> EventClass:
        """The class of events with this id and page (created and cached on first sight)."""
        pages = self.classes.get(eid)
        if pages is None:
            pages = self.classes[eid] = {}
        found = pages.get(page)
        if found is None:
            if self._class_count >= _CLASS_LIMIT:
                self.classes.clear()  # in place: the engine holds this dict
                for node in self.nodes.values():
                    node.trans.clear()
                for node in self.views.values():
                    node.trans.clear()
                self._class_count = 0
                pages = self.classes[eid] = {}
            found = self._new_class(eid, page)
            pages[page] = found
            self._class_count += 1
        return found

    @classmethod
    def compile(cls, triggers: dict[str, Trigger]) -> TriggerTrie:
        return cls(triggers).finish()

    def describe(self) -> dict[str, Any]:
        return {"tasks": self.stats.tasks, "variants": self.stats.variants,
                "nodes": self.stats.nodes, "shared": self.stats.shared_nodes_saved,
                "root_ids": self.stats.root_ids}
