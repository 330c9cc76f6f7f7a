"""Load-time constant folding: every node whose inputs are all constants becomes constants.

Some exporters compute weights instead of storing them: the ONNX "light" models build every
Conv weight and BatchNorm statistic with ``ConstantOfShape``; others ``Unsqueeze``, ``Reshape``
or ``Cast`` initializers, or derive shapes through ``Shape`` of static values. The planner folds
all that at plan time, but graph rewrites (Conv+BatchNorm folding, per-channel affine folding)
run before planning and only see constants, so the graph is folded first. Each node is planned
on its own by the planner with the reference backend (the living definition of every op), so a
folded value is exactly what plan-time folding would have computed; a node that cannot be
evaluated here (unknown op, data-dependent, malformed) is simply left for the planner, which
reports its error as before.

Size guard: a fold that grows data (``ConstantOfShape``, ``Expand``, ``Tile``, ``Range`` ...)
materialises a tensor for the life of the session, so growth (output bytes beyond input bytes)
is capped at :data:`GROWTH_BUDGET` in total; past it, nodes stay in the graph for the planner,
which keeps large broadcasts of constants as transient run-time rasters. Broadcasts the planner
itself would keep as rasters are not folded here either.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from walle_core.geometry import NodeContext
from walle_core.ir import dtypes
from walle_core.ir.graph import Graph, Node, TensorType, Value
from walle_core.runtime.planner import CONTROL_FLOW, RANDOM_OPS, Planner

#: Total bytes that folding may add beyond its inputs. The brief was "tiny ones must not make
#: huge ones past ~64 MB"; 128 MB because light_resnet50 alone builds 98 MB of weights with
#: ConstantOfShape (which the planner materialises anyway), and a cut through the middle of a
#: model would leave its last Conv+BatchNorm pairs unfolded for no memory saved.
GROWTH_BUDGET = 128 << 20


class _Skip(Exception):
    """This node stays in the graph (too large to fold, or not evaluable here)."""


class _Folder(Planner):
    """A planner for one node whose inputs are all constants, refusing growth past ``room``."""

    def __init__(self, graph: Graph, backend: Any, in_bytes: int, room: int) -> None:
        super().__init__(graph, backend)
        self.in_bytes = in_bytes
        self.room = room
        self.grown = 0

    def _charge(self, out_bytes: int) -> None:
        self.grown = max(self.grown, out_bytes - self.in_bytes)
        if self.grown > self.room:
            raise _Skip("over the growth budget")

    def fold(self, mark: int) -> None:
        slots = self.builder.slots
        self._charge(sum(slots[s].nbytes for st in self.builder.steps[mark:] for s in st.outputs))
        super().fold(mark)

    def native(self, node: Node, ctx: NodeContext, foldable: bool) -> list[int]:
        if not foldable:
            raise _Skip("not foldable")
        from walle_core.frontend.onnx.infer import infer_outputs

        ins = ctx.inputs
        specs = infer_outputs(node, self.graph.opsets,
                              [self.builder.slots[s] if s >= 0 else None for s in ins],
                              [self.builder.consts.get(s) if s >= 0 else None for s in ins])
        if specs is None:  # size unknown before running it: do not risk it at load time
            raise _Skip("output size unknown")
        self._charge(sum(s.nbytes for s in specs))
        return super().native(node, ctx, foldable)


def _candidate(node: Node, inner_reads: set[int]) -> bool:
    if node.op_type in RANDOM_OPS or (node.domain == "" and node.op_type in CONTROL_FLOW):
        return False
    if node.subgraphs() or any(id(o) in inner_reads for o in node.outputs):
        return False  # values read inside bodies keep their producer (no body rewriting)
    return all(v is None or v.const is not None for v in node.inputs)


def _evaluate(graph: Graph, node: Node, backend: Any, room: int) -> tuple[list[Value], int]:
    """The node's outputs as constant values, and the bytes they grew by."""
    in_bytes = sum(np.asarray(v.const).nbytes for v in node.inputs if v is not None)
    folder = _Folder(graph, backend, in_bytes, room)
    try:
        outs = folder.lower(node)
    except Exception as exc:  # _Skip, or an error the planner reports later if it matters
        raise _Skip(str(exc)) from None
    consts = folder.builder.consts
    values = []
    for value, slot in zip(node.outputs, outs, strict=True):
        data = consts.get(slot)
        if not isinstance(data, np.ndarray):  # kept as a run-time raster, or a sequence
            raise _Skip("not a constant tensor")
        data = np.require(data, requirements="C")  # ascontiguousarray would make 0-d 1-d
        values.append(Value(value.name, TensorType(dtypes.from_numpy(data.dtype),
                                                   tuple(data.shape)), data))
    return values, folder.grown


def fold_constants(graph: Graph, budget: int = GROWTH_BUDGET) -> tuple[Graph, int]:
    """A new graph with every constant-input node replaced by constants, and how many were.

    The input graph is not modified (folded values are new :class:`Value` objects).
    """
    from walle_core.reference_backend import ReferenceBackend

    top = {id(n) for n in graph.nodes}
    inner_reads = {id(v) for n in graph.walk() if id(n) not in top
                   for v in n.inputs if v is not None}
    backend = ReferenceBackend()
    renamed: dict[int, Value] = {}  # id(old value) -> folded constant
    nodes: list[Node] = []
    folded = 0
    for node in graph.nodes:
        inputs = [renamed.get(id(v), v) if v is not None else None for v in node.inputs]
        if any(a is not b for a, b in zip(inputs, node.inputs, strict=True)):
            node = replace(node, inputs=inputs)
        if _candidate(node, inner_reads):
            try:
                values, grown = _evaluate(graph, node, backend, budget)
            except _Skip:
                pass
            else:
                budget -= grown
                renamed.update((id(o), v) for o, v in zip(node.outputs, values, strict=True))
                folded += 1
                continue
        nodes.append(node)
    if not folded:
        return graph, 0
    outputs = [renamed.get(id(v), v) for v in graph.outputs]
    used = {id(v) for n in nodes for v in n.inputs} | {id(v) for v in outputs}
    inits = graph.initializers + [v for v in renamed.values() if id(v) in used]
    return replace(graph, nodes=nodes, outputs=outputs, initializers=inits), folded
