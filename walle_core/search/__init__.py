"""Semi-auto search: which backend and algorithm runs each step of a planned program.

At session creation, once shapes are known, every candidate backend offers its
:meth:`~walle_core.backend.ExecutionBackend.algorithms` for each step, each with an estimated
cost from that backend's calibrated :class:`~walle_core.search.profile.CostProfile`. A tensor
that crosses memory domains (host <-> an OpenCL device) costs a transfer, charged once per
tensor and destination, however many steps read it there.

The assignment of least total cost is then found per graph:

* one memory domain (e.g. numba + reference, both host): transfers are free, so each step
  simply takes its cheapest candidate;
* two domains (host + one device): an exact minimum s-t cut. Each step is a node whose two cut
  edges carry its cost on either side; each tensor adds two auxiliary nodes so that its
  transfer is paid once if *any* reader is on the other side (see :mod:`.mincut`);
* more domains: start from the best single-domain placement and improve it step by step
  (iterated conditional modes) until no single move lowers the total.

MNN's open-source scheduler takes a fixed backend priority list and falls back op by op; this
costs the alternatives instead, so a device that is slower for small ops, or whose transfers
dominate, is not used where it loses.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from walle_core.backend import Algorithm, ExecutionBackend
from walle_core.ir.errors import WalleError
from walle_core.ir.primitives import Step, TensorSpec
from walle_core.search.measure import Measurements
from walle_core.search.mincut import MinCut
from walle_core.search.profile import CostProfile

HOST = "host"
_TransferCost = Callable[[int, str, str], float]  # (bytes, from domain, to domain) -> seconds


class SearchError(WalleError):
    """No candidate backend can run a step."""


@dataclass
class Placement:
    """The search's answer: per step a backend, an algorithm and its estimated seconds."""

    primary: ExecutionBackend  # owns feeds and outputs when no step decides otherwise
    backends: list[ExecutionBackend]
    algorithms: list[Algorithm]
    candidates: list[list[tuple[str, Algorithm]]]  # everything costed, per step
    method: str
    seconds: float = 0.0  # wall time of the search itself
    transfer_seconds: float = 0.0  # estimated transfer time per run
    transfers: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def estimated_seconds(self) -> float:
        return sum(a.cost for a in self.algorithms) + self.transfer_seconds

    def domains(self) -> list[str]:
        return [b.memory_domain for b in self.backends]


#: What a megabyte held for the session's life is worth in microseconds of one run, when the
#: search weighs an algorithm's ``extra_bytes`` against its time (``WALLE_MEMORY_US_PER_MB``
#: overrides; 0 ignores memory). At 10 us/MB DenseNet-121's 14x14 and 7x7 3x3 Convs take
#: Winograd F(2x2) over F(4x4) (2-3 us slower each, 0.33 MB less): 34 -> 21 MB of
#: transformed weights; VGG-19's keep F(4x4), worth milliseconds per layer.
MEMORY_US_PER_MB = 10.0


def _env_number(name: str, default: float) -> float:
    """``$name`` as a non-negative number, ``default`` when unset or not a number."""
    raw = os.environ.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = default
    return max(value, 0.0)


def memory_price() -> float:
    """Seconds of run time one byte of ``Algorithm.extra_bytes`` is charged."""
    return _env_number("WALLE_MEMORY_US_PER_MB", MEMORY_US_PER_MB) * 1e-6 / (1 << 20)


#: Memory the chosen algorithms may hold beyond their operands, as a share of the model's
#: constants (``WALLE_MEMORY_BUDGET``; ``inf`` for no limit). At 0.5 Inception-v1 held 12.5 MB
#: of transformed weights for a 69.7 MB peak, onnxruntime's 68-70; at 0.4 63.9 MB, and
#: Inception-v2, the model that gives up most Winograd for it, was within noise (three
#: interleaved runs each way); at 0.35 Inception-v2 was 7% slower.
MEMORY_BUDGET = 0.4
#: ... but never less than this many bytes (while the share is above 0): a model of few
#: constants had almost no room (SqueezeNet's 4.8 MB allowed 1.9 MB, and four of its 3x3 layers
#: gave Winograd up, 2-3% of its run; with 8 MB it holds ~5 MB more, peak 16 -> ~21 MB against
#: onnxruntime's 25).
MEMORY_FLOOR = 8 << 20


def memory_budget() -> float:
    """The held-memory budget as a share of the model's constant bytes."""
    return _env_number("WALLE_MEMORY_BUDGET", MEMORY_BUDGET)


def charged(alg: Algorithm, price: float) -> float:
    """An algorithm's time plus what it holds, at ``price`` seconds per byte."""
    return alg.cost + alg.extra_bytes * price


def search(steps: Sequence[Step], slots: Sequence[TensorSpec], inputs: Sequence[int],
           outputs: Sequence[int], consts: set[int] | dict[int, object],
           aliases: dict[int, int], backends: Sequence[ExecutionBackend],
           profiles: dict[str, CostProfile],
           fallback: Sequence[ExecutionBackend] = (),
           measure: Measurements | None = None) -> Placement:
    """Least-cost placement of ``steps`` over ``backends``.

    ``fallback`` backends are candidates only for steps none of ``backends`` supports (the
    reference backend behind an explicitly chosen one). With ``measure``, close calls between
    candidates are timed once per machine (see :mod:`.measure`).
    """
    t0 = time.perf_counter()
    n = len(steps)
    candidates: list[list[tuple[ExecutionBackend, Algorithm]]] = []
    for step in steps:
        ins = [slots[s] if s >= 0 else None for s in step.inputs]
        outs = [slots[s] for s in step.outputs]
        options = _options(step, ins, outs, backends, profiles)
        if not options:
            options = _options(step, ins, outs, fallback, profiles)
        if not options:
            names = ", ".join(b.name for b in (*backends, *fallback))
            raise SearchError(f"no backend supports {step.prim.kind} from {step.origin!r} "
                              f"(tried {names})")
        candidates.append(options)
    measured_before = (measure.measured, measure.reused) if measure is not None else (0, 0)
    if measure is not None:
        measure.refine(steps, slots, candidates, consts)

    # cheapest candidate per domain, per step
    domains = sorted({b.memory_domain for opts in candidates for b, _ in opts},
                     key=lambda d: (d != HOST, d))

    def cheapest(price: float) -> list[dict[str, tuple[ExecutionBackend, Algorithm]]]:
        best: list[dict[str, tuple[ExecutionBackend, Algorithm]]] = []
        for opts in candidates:
            per: dict[str, tuple[ExecutionBackend, Algorithm]] = {}
            for b, alg in opts:
                d = b.memory_domain
                if d not in per or charged(alg, price) < charged(per[d][1], price):
                    per[d] = (b, alg)
            best.append(per)
        return best

    graph = _DataGraph(steps, slots, inputs, outputs, consts, aliases)
    device_profile = {b.memory_domain: profiles[b.name] for opts in candidates for b, _ in opts
                      if b.memory_domain != HOST}

    def transfer_cost(nbytes: int, src: str, dst: str) -> float:
        cost = 0.0
        if src != HOST:
            cost += device_profile[src].transfer(nbytes, to_device=False)
        if dst != HOST:
            cost += device_profile[dst].transfer(nbytes, to_device=True)
        return cost

    def choose(price: float) -> tuple[list[str], str, list[tuple[ExecutionBackend, Algorithm]]]:
        """(domain per step, how it was found, the choice per step) at ``price`` per byte."""
        best = cheapest(price)
        if len(domains) == 1:
            labels = [domains[0]] * n
            method = "per-step least cost (one memory domain)"
        elif len(domains) == 2:
            labels = _two_domains(best, graph, domains, transfer_cost)
            method = f"minimum cut over {'/'.join(domains)} (exact)"
        else:
            labels = _local_search(best, graph, domains, transfer_cost)
            method = f"local search over {len(domains)} memory domains"
        return labels, method, [best[i][labels[i]] for i in range(n)]

    price = memory_price()
    labels, method, chosen = choose(price)
    notes = []
    # memory the chosen algorithms hold beyond their operands (Winograd's transformed weights,
    # packed panels) stays within a share of the model's constants: past it, memory is
    # charged more until it fits, so the steps that save least time per byte give it up first
    weights = sum(slots[s].nbytes for s in consts if 0 <= s < len(slots))
    share = memory_budget()
    budget = max(share * weights, MEMORY_FLOOR) if share > 0 else 0.0
    held = sum(a.extra_bytes for _, a in chosen)
    if held > budget and price > 0:
        def fits(p: float) -> bool:
            return sum(per[HOST if HOST in per else next(iter(per))][1].extra_bytes
                       for per in cheapest(p)) <= budget

        lo, hi = price, price * 2
        while not fits(hi) and hi < price * 2 ** 30:
            lo, hi = hi, hi * 2
        for _ in range(24):  # the least price that fits: the fewest steps give memory up
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if fits(mid) else (mid, hi)
        price = hi
        labels, method, chosen = choose(price)
        held = sum(a.extra_bytes for _, a in chosen)
        notes.append(f"held memory {held / 2**20:.1f} MB within {budget / 2**20:.1f} MB "
                     f"({share:g} of {weights / 2**20:.1f} MB of constants): "
                     f"memory charged {price * 1e6 * 2**20:.0f} us/MB")
    total_transfer, count = graph.transfer_total(labels, transfer_cost)
    if measure is not None:
        notes.append(f"{measure.measured - measured_before[0]} close calls measured now, "
                     f"{measure.reused - measured_before[1]} from the per-machine cache")
    return Placement(
        primary=(*backends, *fallback)[0], backends=[b for b, _ in chosen],
        algorithms=[a for _, a in chosen],
        candidates=[[(b.name, a) for b, a in opts] for opts in candidates], method=method,
        seconds=time.perf_counter() - t0, transfer_seconds=total_transfer, transfers=count,
        notes=notes)


def _options(step: Step, ins: list[TensorSpec | None], outs: list[TensorSpec],
             backends: Sequence[ExecutionBackend], profiles: dict[str, CostProfile]
             ) -> list[tuple[ExecutionBackend, Algorithm]]:
    found: list[tuple[ExecutionBackend, Algorithm]] = []
    for b in backends:
        if not b.supports(step.prim):
            continue
        try:
            algs = b.algorithms(step, ins, outs, profiles[b.name])
        except WalleError:
            continue  # the backend declines this step's shapes or dtypes
        found.extend((b, a) for a in algs)
    return found


class _DataGraph:
    """Who produces and who reads each stored tensor, in terms of steps."""

    def __init__(self, steps: Sequence[Step], slots: Sequence[TensorSpec],
                 inputs: Sequence[int], outputs: Sequence[int],
                 consts: set[int] | dict[int, object], aliases: dict[int, int]) -> None:
        self.slots = slots
        self.producer: dict[int, int] = {}  # root slot -> step index (-1: a feed)
        self.readers: dict[int, set[int]] = {}
        for s in inputs:
            if s not in consts:
                self.producer[aliases.get(s, s)] = -1
        for i, step in enumerate(steps):
            for s in step.outputs:
                self.producer.setdefault(aliases.get(s, s), i)
        for i, step in enumerate(steps):
            for s in step.inputs:
                root = aliases.get(s, s)
                if s >= 0 and root in self.producer:
                    self.readers.setdefault(root, set()).add(i)
        self.outputs = {aliases.get(s, s) for s in outputs if aliases.get(s, s) in self.producer}

    def transfer_total(self, labels: list[str], cost: _TransferCost) -> tuple[float, int]:
        total, count = 0.0, 0
        for slot, p in self.producer.items():
            home = HOST if p < 0 else labels[p]
            wanted = {labels[r] for r in self.readers.get(slot, ())}
            if slot in self.outputs:
                wanted.add(HOST)
            for d in wanted - {home}:
                total += cost(self.slots[slot].nbytes, home, d)
                count += 1
        return total, count


def _two_domains(best: list[dict[str, tuple[ExecutionBackend, Algorithm]]], graph: _DataGraph,
                 domains: list[str], cost: _TransferCost) -> list[str]:
    """Exact least-cost labelling over two memory domains by one minimum s-t cut.

    Label 0 (source side) is ``domains[0]``, label 1 (sink side) ``domains[1]``. A step with
    no candidate on one side gets an infinite cost there.
    """
    a, b = domains
    n = len(best)
    inf = float("inf")
    cut = MinCut(n + 2 * len(graph.producer))
    for i, per in enumerate(best):
        cut.unary(i, per[a][1].cost if a in per else inf, per[b][1].cost if b in per else inf)
    aux = n
    for slot, p in graph.producer.items():
        readers = graph.readers.get(slot, set())
        nbytes = graph.slots[slot].nbytes
        to_b, to_a = cost(nbytes, a, b), cost(nbytes, b, a)
        # producer on a, some reader on b: pay a->b once (aux z: any reader on b forces z=b)
        if readers:
            z = aux
            aux += 1
            for r in readers:
                cut.edge(z, r, inf)  # r on b (sink) with z on a (source) is forbidden
            if p < 0:  # a feed: it starts on the host
                cut.unary(z, 0.0, cost(nbytes, HOST, b))
            else:
                cut.edge(p, z, to_b)
            # producer on b, some reader on a: pay b->a once
            y = aux
            aux += 1
            for r in readers:
                cut.edge(r, y, inf)  # r on a with y on b is forbidden
            if p < 0:
                cut.unary(y, cost(nbytes, HOST, a), 0.0)
            else:
                cut.edge(y, p, to_a)
        if slot in graph.outputs and p >= 0:  # outputs are read on the host
            cut.unary(p, cost(nbytes, a, HOST), cost(nbytes, b, HOST))
    side = cut.solve()
    return [b if side[i] else a for i in range(n)]


def _local_search(best: list[dict[str, tuple[ExecutionBackend, Algorithm]]], graph: _DataGraph,
                  domains: list[str], cost: _TransferCost) -> list[str]:
    n = len(best)

    def total(labels: list[str]) -> float:
        return sum(best[i][labels[i]][1].cost for i in range(n)) + \
            graph.transfer_total(labels, cost)[0]

    def cheapest(per: dict[str, tuple[ExecutionBackend, Algorithm]]) -> str:
        return min(per, key=lambda k: per[k][1].cost)

    starts = [[d if d in best[i] else cheapest(best[i]) for i in range(n)] for d in domains]
    starts.append([cheapest(per) for per in best])
    labels = min(starts, key=total)
    current = total(labels)
    for _ in range(4):
        improved = False
        for i in range(n):
            for d in best[i]:
                if d == labels[i]:
                    continue
                old = labels[i]
                labels[i] = d
                t = total(labels)
                if t < current - 1e-12:
                    current, improved = t, True
                else:
                    labels[i] = old
        if not improved:
            break
    return labels
