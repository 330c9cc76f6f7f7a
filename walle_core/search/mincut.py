"""Minimum s-t cut (Dinic's max-flow) for two-label least-cost assignment.

Nodes take label 0 (source side) or 1 (sink side). ``unary(i, c0, c1)`` charges ``c0`` when
``i`` ends on side 0 and ``c1`` on side 1; ``edge(u, v, w)`` charges ``w`` when ``u`` is on side
0 and ``v`` on side 1. Every such energy with non-negative weights is minimised exactly by one
minimum cut. Infinite weights become a finite "big M" larger than every finite cost combined.
"""

from __future__ import annotations

import math
from collections import deque

EPS = 1e-9


class MinCut:
    def __init__(self, nodes: int) -> None:
        self.n = nodes + 2
        self.source, self.sink = nodes, nodes + 1
        self.head: list[list[int]] = [[] for _ in range(self.n)]
        self.to: list[int] = []
        self.cap: list[float] = []
        self._unary: dict[int, list[float]] = {}
        self._edges: dict[tuple[int, int], float] = {}

    def unary(self, i: int, cost0: float, cost1: float) -> None:
        acc = self._unary.setdefault(i, [0.0, 0.0])
        acc[0] += cost0
        acc[1] += cost1

    def edge(self, u: int, v: int, w: float) -> None:
        if w > 0:
            self._edges[(u, v)] = self._edges.get((u, v), 0.0) + w

    def _add(self, u: int, v: int, w: float) -> None:
        self.head[u].append(len(self.to))
        self.to.append(v)
        self.cap.append(w)
        self.head[v].append(len(self.to))
        self.to.append(u)
        self.cap.append(0.0)

    def solve(self) -> list[bool]:
        """Side of each node after a minimum cut: True = sink side (label 1)."""
        finite = [c for acc in self._unary.values() for c in acc if math.isfinite(c)]
        finite += [w for w in self._edges.values() if math.isfinite(w)]
        big = (sum(finite) + 1.0) * 4

        def fin(c: float) -> float:  # seconds -> microseconds keeps capacities well above EPS
            return (c if math.isfinite(c) else big) * 1e6

        for i, (c0, c1) in self._unary.items():
            c0, c1 = fin(c0), fin(c1)
            low = min(c0, c1)  # a constant shift does not change the argmin
            if c1 - low > 0:
                self._add(self.source, i, c1 - low)  # cut when i is on the sink side
            if c0 - low > 0:
                self._add(i, self.sink, c0 - low)  # cut when i is on the source side
        for (u, v), w in self._edges.items():
            self._add(u, v, fin(w))
        self._maxflow()
        reach = self._reachable()
        return [not reach[i] for i in range(self.n - 2)]

    def _maxflow(self) -> float:
        flow = 0.0
        eps = EPS
        while True:
            level = [-1] * self.n
            level[self.source] = 0
            queue = deque([self.source])
            while queue:
                u = queue.popleft()
                for e in self.head[u]:
                    if self.cap[e] > eps and level[self.to[e]] < 0:
                        level[self.to[e]] = level[u] + 1
                        queue.append(self.to[e])
            if level[self.sink] < 0:
                return flow
            it = [0] * self.n
            while True:
                pushed = self._augment(level, it)
                if pushed <= eps:
                    break
                flow += pushed

    def _augment(self, level: list[int], it: list[int]) -> float:
        """One blocking-flow path found iteratively (no recursion limits on deep graphs)."""
        path: list[int] = []  # edge ids
        u = self.source
        while True:
            if u == self.sink:
                pushed = min(self.cap[e] for e in path)
                for e in path:
                    self.cap[e] -= pushed
                    self.cap[e ^ 1] += pushed
                return pushed
            advanced = False
            edges = self.head[u]
            while it[u] < len(edges):
                e = edges[it[u]]
                v = self.to[e]
                if self.cap[e] > EPS and level[v] == level[u] + 1:
                    path.append(e)
                    u = v
                    advanced = True
                    break
                it[u] += 1
            if not advanced:
                if not path:
                    return 0.0
                level[u] = -1  # dead end: prune it
                e = path.pop()
                u = self.to[e ^ 1]
                it[u] += 1

    def _reachable(self) -> list[bool]:
        seen = [False] * self.n
        seen[self.source] = True
        queue = deque([self.source])
        while queue:
            u = queue.popleft()
            for e in self.head[u]:
                if self.cap[e] > EPS and not seen[self.to[e]]:
                    seen[self.to[e]] = True
                    queue.append(self.to[e])
        return seen
