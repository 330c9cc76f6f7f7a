"""A planned program bound to its placement: buffers allocated once, kernels compiled once.

The search (:mod:`walle_core.search`) gives each step a backend and an algorithm. Backends that
share a memory domain share buffers; where a tensor is read in a domain other than the one it
was written in, the executable inserts a :class:`Transfer` (``download`` from the producing
backend, ``upload`` into the reading one) just before its first reader there, and the copy gets
its own slot in that domain's arena. Each domain has one static arena, planned by lifetime.

``run`` only uploads feeds, calls the compiled steps and transfers in order and downloads
outputs; nothing is allocated by the engine on this path once the executable exists.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from walle_core.backend import Algorithm, CompiledStep, ExecutionBackend
from walle_core.ir.errors import ExecutionError
from walle_core.ir.primitives import Primitive, Step, TensorSpec
from walle_core.runtime.memory import MemoryPlan, lifetimes, plan_memory
from walle_core.runtime.planner import Program
from walle_core.search import HOST, Placement


@dataclass(frozen=True)
class Transfer(Primitive):
    """A copy of one tensor between memory domains, inserted by the executable (never seen by
    a backend's ``compile``)."""

    src_domain: str
    dst_domain: str


@dataclass
class Op:
    """One entry of the run order: a program step or an inserted transfer."""

    step: Step
    backend: ExecutionBackend  # the one that runs it (for a transfer: the destination)
    algorithm: Algorithm | None
    index: int  # position in program.steps, or -1 for a transfer
    source: ExecutionBackend | None = None  # transfers: where the data comes from


class Executable:
    """Program + placement + per-domain memory plans + compiled steps."""

    def __init__(self, program: Program, placement: Placement) -> None:
        self.program = program
        self.placement = placement
        consts = program.builder.consts
        self.slots: list[TensorSpec] = list(program.slots)
        root = program.root
        owner: dict[str, ExecutionBackend] = {}
        for b in placement.backends:
            owner.setdefault(b.memory_domain, b)
        self.backend = placement.primary
        owner.setdefault(self.backend.memory_domain, self.backend)

        # where each stored tensor lives: its producer's domain (feeds: first reader's domain)
        home: dict[int, str] = {}
        for i, step in enumerate(program.steps):
            for s in step.outputs:
                home.setdefault(root(s), placement.backends[i].memory_domain)
        readers_domain: dict[int, list[str]] = {}
        for i, step in enumerate(program.steps):
            for s in step.inputs:
                if s >= 0:
                    readers_domain.setdefault(root(s), []).append(
                        placement.backends[i].memory_domain)
        for s in program.inputs.values():
            r = root(s)
            if r not in consts and r not in home:
                ds = readers_domain.get(r, [])
                home[r] = HOST if HOST in ds or not ds else ds[0]
        if HOST not in owner and any(d == HOST for d in home.values()):
            from walle_core.reference_backend import ReferenceBackend

            owner[HOST] = ReferenceBackend()
        self.owner = owner

        # run order with transfers before the first reader in another domain
        self.ops: list[Op] = []
        copies: dict[tuple[int, str], int] = {}  # (slot, domain) -> slot of the copy there
        remapped: list[list[int]] = []
        for i, step in enumerate(program.steps):
            b = placement.backends[i]
            dom = b.memory_domain
            ins = []
            for s in step.inputs:
                if s < 0 or root(s) in consts or home.get(root(s), dom) == dom:
                    ins.append(s)
                    continue
                key = (s, dom)
                if key not in copies:
                    copies[key] = len(self.slots)
                    self.slots.append(program.slots[s])
                    src = owner[home[root(s)]]
                    self.ops.append(Op(Step(Transfer(src.memory_domain, dom), [s], [copies[key]],
                                            f"transfer for {step.origin}"), b, None, -1, src))
                ins.append(copies[key])
            remapped.append(ins)
            self.ops.append(Op(Step(step.prim, ins, list(step.outputs), step.origin), b,
                               placement.algorithms[i], i))
        for (_, dom), c in copies.items():
            home[c] = dom
        self.transfers = len(copies)

        # one arena per memory domain, planned over the whole run order
        feeds = [s for s in program.inputs.values() if s not in consts]
        life = lifetimes([op.step for op in self.ops], feeds, [s for _, s in program.outputs],
                         set(consts), program.aliases)
        self.memories: dict[str, MemoryPlan] = {}
        self.arenas: dict[str, Any] = {}
        for dom, b in owner.items():
            mine = {s: span for s, span in life.items() if home.get(s) == dom}
            self.memories[dom] = plan_memory(self.slots, mine)
            nbytes = self.memories[dom].arena_bytes
            self.arenas[dom] = b.allocate(nbytes) if nbytes else None
        self.home = home

        # buffers: (slot, domain) -> backend buffer
        const_bufs: dict[tuple[int, str], Any] = {}
        views: dict[tuple[int, str], Any] = {}

        def buffer(s: int, dom: str) -> Any:
            r = root(s)
            if r in consts or s in consts:
                value = consts[s] if s in consts else np.asarray(consts[r]).reshape(
                    self.slots[s].shape)
                key = (s, dom)
                if key not in const_bufs:
                    const_bufs[key] = owner[dom].constant(value) \
                        if isinstance(value, np.ndarray) else value
                return const_bufs[key]
            d = home[r]
            if (s, d) not in views:  # one buffer object per slot: object (string) views are
                views[(s, d)] = owner[d].view(  # fresh arrays, not windows on the arena
                    self.arenas[d], self.memories[d].offsets[r] +
                    program.alias_offsets.get(s, 0), self.slots[s])
            return views[(s, d)]

        self.compiled: list[tuple[CompiledStep, list[Any], list[Any]]] = []
        for op in self.ops:
            dom = op.backend.memory_domain
            if isinstance(op.step.prim, Transfer):
                s_in, s_out = op.step.inputs[0], op.step.outputs[0]
                assert op.source is not None
                self.compiled.append((_transfer(op.source, op.backend),
                                      [buffer(s_in, op.step.prim.src_domain)],
                                      [buffer(s_out, dom)]))
                continue
            ins_specs = [self.slots[s] if s >= 0 else None for s in op.step.inputs]
            outs_specs = [self.slots[s] for s in op.step.outputs]
            fn = op.backend.compile(op.step, ins_specs, outs_specs, algorithm=op.algorithm)
            self.compiled.append((fn, [buffer(s, dom) if s >= 0 else None
                                       for s in op.step.inputs],
                                  [buffer(s, dom) for s in op.step.outputs]))
        self.feeds = {name: (slot, owner[home[root(slot)]], buffer(slot, home[root(slot)]))
                      for name, slot in program.inputs.items() if root(slot) not in consts
                      and root(slot) in self.memories[home[root(slot)]].offsets}
        self.results: list[tuple[str, ExecutionBackend | None, Any]] = []
        for name, slot in program.outputs:
            if slot in consts or root(slot) in consts:
                self.results.append((name, None, consts[slot] if slot in consts else
                                     np.asarray(consts[root(slot)]).reshape(program.slots[slot]
                                                                             .shape)))
            else:
                d = home[root(slot)]
                self.results.append((name, owner[d], buffer(slot, d)))
        self._backends = list({id(b): b for b in owner.values()}.values())
        # what run calls: each step bound to its buffers once (CompiledStep.bind) where the
        # backend offers it; ops of the bound ones, to name a step that fails
        self._calls: list[Callable[[], None]] = []
        self._bound: dict[int, Op] = {}
        for (fn, ins, outs), op in zip(self.compiled, self.ops, strict=True):
            bind = getattr(fn, "bind", None)
            call = bind(ins, outs) if bind is not None else partial(fn, ins, outs)
            if bind is not None:
                self._bound[id(call)] = op
            self._calls.append(call)

    @property
    def memory(self) -> MemoryPlan:
        """The memory plan of the primary backend's domain."""
        return self.memories.get(self.backend.memory_domain) or next(iter(self.memories.values()))

    @property
    def arena_bytes(self) -> int:
        return sum(m.arena_bytes for m in self.memories.values())

    def _upload_feeds(self, feeds: dict[str, np.ndarray]) -> None:
        for name, (_, backend, buf) in self.feeds.items():
            if name in feeds:
                backend.upload(feeds[name], buf)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._upload_feeds(feeds)
        call = None
        try:
            for call in self._calls:
                call()
        except ExecutionError:
            raise
        except Exception as exc:
            op = self._bound.get(id(call))
            if op is None:
                raise
            raise ExecutionError(
                f"{op.step.prim.kind} from node {op.step.origin!r} failed on "
                f"{op.backend.name}: {type(exc).__name__}: {exc}") from exc
        for b in self._backends:
            b.sync()
        result = {}
        for name, backend, buf in self.results:
            result[name] = backend.download(buf) if backend is not None else _copy(buf)
        return result

    def profile(self, feeds: dict[str, np.ndarray], runs: int = 5) -> list[float]:
        """Median seconds of each op (steps and transfers, in run order), synchronising after
        every op so device time is charged to the op that queued it."""
        times = np.zeros((max(runs, 1), len(self.compiled)))
        for r in range(max(runs, 1)):
            self._upload_feeds(feeds)
            for b in self._backends:
                b.sync()
            for k, (call, op) in enumerate(zip(self._calls, self.ops, strict=True)):
                t0 = time.perf_counter()
                call()  # as run calls it (bound where the backend binds)
                op.backend.sync()
                times[r, k] = time.perf_counter() - t0
        return [float(t) for t in np.median(times, axis=0)]


def _transfer(src: ExecutionBackend, dst: ExecutionBackend) -> CompiledStep:
    def run(ins: Any, outs: Any) -> None:
        value = ins[0] if src.memory_domain == HOST else src.download(ins[0])
        dst.upload(np.asarray(value), outs[0])

    return run


def _copy(value: Any) -> Any:
    return np.array(value, copy=True) if isinstance(value, np.ndarray) else value
