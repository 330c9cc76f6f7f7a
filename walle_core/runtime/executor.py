"""A planned program bound to a backend: buffers allocated once, kernels compiled once.

``run`` only uploads feeds, calls the compiled steps in order and downloads outputs; nothing
is allocated by the engine on this path once the executable exists.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from walle_core.backend import CompiledStep, ExecutionBackend
from walle_core.runtime.memory import MemoryPlan, lifetimes, plan_memory
from walle_core.runtime.planner import Program


class Executable:
    """Program + memory plan + compiled steps on one backend."""

    def __init__(self, program: Program, backend: ExecutionBackend) -> None:
        self.program = program
        self.backend = backend
        consts = program.builder.consts
        used = {s for step in program.steps for s in (*step.inputs, *step.outputs) if s >= 0}
        used |= set(program.inputs.values()) | {s for _, s in program.outputs}
        self.memory: MemoryPlan = plan_memory(program.slots, lifetimes(
            program.steps, [s for s in program.inputs.values() if s not in consts],
            [s for _, s in program.outputs], set(consts), program.aliases))
        self.arena = backend.allocate(self.memory.arena_bytes)
        self.buffers: dict[int, Any] = {}
        for s in used:
            if s in consts:
                value = consts[s]
                self.buffers[s] = backend.constant(value) if isinstance(value, np.ndarray) \
                    else value
            elif program.root(s) in self.memory.offsets:
                self.buffers[s] = backend.view(self.arena, self.memory.offsets[program.root(s)],
                                               program.slots[s])
            elif program.root(s) in consts:
                self.buffers[s] = np.asarray(consts[program.root(s)]).reshape(
                    program.slots[s].shape)
        self.compiled: list[tuple[CompiledStep, list[Any], list[Any]]] = []
        for step in program.steps:
            ins = [program.slots[s] if s >= 0 else None for s in step.inputs]
            outs = [program.slots[s] for s in step.outputs]
            fn = backend.compile(step, ins, outs)
            self.compiled.append((fn, [self.buffers[s] if s >= 0 else None for s in step.inputs],
                                  [self.buffers[s] for s in step.outputs]))

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, slot in self.program.inputs.items():
            if name in feeds and slot in self.memory.offsets:  # feeds land in the arena
                self.backend.upload(feeds[name], self.buffers[slot])
        for fn, ins, outs in self.compiled:
            fn(ins, outs)
        self.backend.sync()
        result = {}
        for name, slot in self.program.outputs:
            buf = self.buffers[slot]
            consts = self.program.builder.consts
            result[name] = self.backend.download(buf) if slot not in consts else _copy(buf)
        return result


def _copy(value: Any) -> Any:
    return np.array(value, copy=True) if isinstance(value, np.ndarray) else value
