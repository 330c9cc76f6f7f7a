"""Planning: walk the graph once per set of input shapes and emit a primitive program.

Each node is lowered by its geometry decomposer, or by the backend's native kernel when it has
one and geometry declines. Nodes whose inputs are all known at plan time are evaluated on the
spot (constant folding, including everything derived from ``Shape``), so a planned program only
holds work that depends on the feeds. A value needed at plan time but produced from feed data
raises :class:`DataDependent`; the session then plans those shapes eagerly, with the feeds as
constants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from walle_core.backend import ExecutionBackend
from walle_core.geometry import REGISTRY, DataDependent, Decline, NodeContext
from walle_core.geometry.context import Builder
from walle_core.ir.errors import (
    ExecutionError,
    ShapeError,
    UnsupportedOp,
    WalleError,
)
from walle_core.ir.graph import Graph, Node, Value
from walle_core.ir.primitives import Kernel, Raster, Step, TensorSpec
from walle_core.runtime import control_flow

RANDOM_OPS = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
              "Multinomial", "Bernoulli"}
CONTROL_FLOW = {"If", "Loop", "Scan"}


@dataclass
class Program:
    """A planned primitive program for one set of input shapes."""

    builder: Builder
    inputs: dict[str, int]
    outputs: list[tuple[str, int]]
    stats: dict[str, Any] = field(default_factory=dict)
    aliases: dict[int, int] = field(default_factory=dict)  # slot -> slot whose memory it shares
    # slot -> byte offset of its memory inside its root's (0 when absent); only in-place
    # concatenation (passes.concat_in_place) places a slot anywhere but at its root's start
    alias_offsets: dict[int, int] = field(default_factory=dict)

    def root(self, slot: int) -> int:
        return self.aliases.get(slot, slot)

    @property
    def steps(self) -> list[Step]:
        return self.builder.steps

    @property
    def slots(self) -> list[TensorSpec]:
        return self.builder.slots


def route(node: Node, backend: ExecutionBackend,
          specs: list[TensorSpec | None] | None = None) -> str:
    """'decompose', 'native', 'control' or 'unsupported' for ``node`` on ``backend``
    (``specs``: the input specs when known, for :meth:`ExecutionBackend.prefers_native_for`)."""
    key = (node.domain, node.op_type)
    native = key in backend.native_ops()
    if node.op_type in CONTROL_FLOW and node.domain == "":
        return "control"
    if native and (backend.prefers_native_for(*key, specs) if specs is not None
                   else backend.prefers_native(*key)):
        return "native"
    if key in REGISTRY:
        return "decompose"
    return "native" if native else "unsupported"


def unsupported_ops(graph: Graph, backend: ExecutionBackend) -> list[UnsupportedOp]:
    return [
        UnsupportedOp(n.name, n.op_type, n.domain, graph.opset(n.domain))
        for n in graph.walk() if route(n, backend) == "unsupported"
    ]


class Planner:
    """Lowers nodes into one builder; ``env`` maps IR values to slots."""

    def __init__(self, graph: Graph, backend: ExecutionBackend, builder: Builder | None = None,
                 env: dict[int, int] | None = None) -> None:
        self.graph = graph
        self.backend = backend
        self.builder = builder or Builder()
        self.env: dict[int, int] = env if env is not None else {}
        self.stats: dict[str, int] = {"folded": 0, "decomposed": 0, "native": 0}
        self.eager = False  # eager plans must fold everything, however large

    def slot(self, value: Value) -> int:
        if id(value) not in self.env:
            if value.const is None:
                raise WalleError(f"value {value.name!r} is used before it is defined")
            self.env[id(value)] = self.builder.const_slot(np.asarray(value.const))
        return self.env[id(value)]

    def bind_input(self, value: Value, spec: TensorSpec, data: Any = None) -> int:
        slot = self.builder.const_slot(data) if data is not None else self.builder.new_slot(
            spec.shape, spec.dtype)
        self.env[id(value)] = slot
        return slot

    def run_nodes(self, nodes: list[Node]) -> None:
        for node in nodes:
            outs = self.lower(node)
            for value, slot in zip(node.outputs, outs, strict=False):
                self.env[id(value)] = slot

    def lower(self, node: Node) -> list[int]:
        ins = [self.slot(v) if v is not None else -1 for v in node.inputs]
        ctx = NodeContext(self.builder, node.op_type, node.domain, node.name, ins, node.attrs,
                          self.graph.opset(node.domain), len(node.outputs))
        all_const = all(s < 0 or s in self.builder.consts for s in ins)
        foldable = all_const and node.op_type not in RANDOM_OPS
        how = route(node, self.backend, [self.builder.slots[s] if s >= 0 else None for s in ins])
        if how == "control":
            return control_flow.lower(self, node, ctx)
        mark = len(self.builder.steps)
        try:
            if how == "decompose":
                try:
                    outs = REGISTRY[(node.domain, node.op_type)](ctx)
                    self.stats["decomposed"] += 1
                except Decline:
                    del self.builder.steps[mark:]
                    if (node.domain, node.op_type) not in self.backend.native_ops():
                        raise
                    how = "native"
            if how == "native":
                outs = self.native(node, ctx, foldable)
        except (DataDependent, WalleError, Decline):
            raise
        except Exception as exc:  # a malformed node must surface as an engine error naming it
            raise ShapeError(
                f"{node.op_type} node {node.name!r} cannot be planned: {type(exc).__name__}: {exc}"
            ) from None
        if node.op_type not in RANDOM_OPS and len(self.builder.steps) > mark:
            try:
                self.fold(mark)
            except WalleError:
                raise
            except Exception as exc:
                raise ExecutionError(f"{node.op_type} node {node.name!r} failed while folding "
                                     f"constants: {type(exc).__name__}: {exc}") from None
        return outs

    def native(self, node: Node, ctx: NodeContext, foldable: bool) -> list[int]:
        self.stats["native"] += 1
        prim = Kernel(node.op_type, node.domain, node.attrs, ctx.opset)
        if foldable:
            values = [self.builder.consts[s] if s >= 0 else None for s in ctx.inputs]
            while values and values[-1] is None:
                values.pop()
            captured = [_Capture() for _ in node.outputs]
            kernel_outputs(prim, values, captured)
            return [self.builder.const_slot(o.value) for o in captured]
        from walle_core.frontend.onnx.infer import infer_outputs

        specs = infer_outputs(node, self.graph.opsets, [
            self.builder.slots[s] if s >= 0 else None for s in ctx.inputs
        ], [self.builder.consts.get(s) if s >= 0 else None for s in ctx.inputs])
        if specs is None:
            raise DataDependent(f"output shape of {node.op_type} node {node.name!r}")
        outs = [self.builder.new_slot(s.shape, s.dtype) for s in specs]
        ctx.emit(prim, ctx.inputs, outs)
        return outs

    def _keep(self, step: Step) -> bool:
        """Broadcasting rasters of constants stay in the program: folding them would store a
        full-size constant (e.g. per-channel BatchNorm scales) instead of a transient buffer."""
        if self.eager or not isinstance(step.prim, Raster):
            return False
        grown = self.builder.slots[step.outputs[0]].nbytes
        source = sum(self.builder.slots[s].nbytes for s in step.inputs if s >= 0)
        return source > 0 and grown > 4 * source + 65536

    def fold(self, mark: int) -> None:
        """Execute the new steps whose inputs are all constants (in order, so folding cascades)
        and keep only their results: constant folding, also inside a node's decomposition."""
        from walle_core.reference_backend import execute

        steps = self.builder.steps[mark:]
        del self.builder.steps[mark:]
        consts = self.builder.consts
        folded = 0
        with np.errstate(all="ignore"):
            for step in steps:
                if not all(s < 0 or s in consts for s in step.inputs) or self._keep(step):
                    self.builder.steps.append(step)
                    continue
                folded += 1
                ins = [consts[s] if s >= 0 else None for s in step.inputs]
                outs = []
                for s in step.outputs:
                    spec = self.builder.slots[s]
                    outs.append(np.empty(spec.shape, dtype=object if spec.dtype.name == "string"
                                         else spec.dtype.np))
                execute(step.prim, ins, outs)
                for s, o in zip(step.outputs, outs, strict=True):
                    consts[s] = o
        self.stats["folded"] += folded


class _Capture:
    value: Any = None


def kernel_outputs(prim: Kernel, values: list[Any], outs: list[_Capture]) -> None:
    """Run a native kernel on constants, keeping its outputs whatever their shapes."""
    from walle_core.ir.errors import ExecutionError
    from walle_core.reference_ops import get_kernel

    fn = get_kernel(prim.op_type, prim.domain)
    if fn is None:
        raise ExecutionError(f"no reference kernel for {prim.op_type}")
    try:
        with np.errstate(all="ignore"):
            results = fn(values, prim.attrs, prim.opset)
    except WalleError:
        raise
    except Exception as exc:
        raise ExecutionError(f"{prim.op_type} kernel failed: {type(exc).__name__}: {exc}") from exc
    for cap, res in zip(outs, results, strict=False):
        cap.value = res if isinstance(res, list) else np.asarray(res)


def plan(graph: Graph, backend: ExecutionBackend, specs: dict[str, TensorSpec],
         feeds: dict[str, np.ndarray] | None = None) -> Program:
    """Plan ``graph`` for input ``specs``; with ``feeds``, inputs are constants (eager mode)."""
    planner = Planner(graph, backend)
    planner.eager = feeds is not None
    inputs = {}
    for value in graph.inputs:
        if value.name in specs:
            data = feeds.get(value.name) if feeds is not None else None
            inputs[value.name] = planner.bind_input(value, specs[value.name], data)
    planner.run_nodes(graph.nodes)
    outputs = [(v.name, planner.slot(v)) for v in graph.outputs]
    return Program(planner.builder, inputs, outputs, dict(planner.stats))


