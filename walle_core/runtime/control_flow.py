"""If, Loop and Scan: control flow is resolved at plan time or planned eagerly.

If with a condition known at plan time is inlined (the other branch costs nothing). Loop and
Scan with every input known are unrolled by evaluating the body once per iteration (each body
run is itself a fully folded plan). Anything else depends on feed data, so the session plans
those shapes eagerly, with the feeds as constants, where every condition is known.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from walle_core.geometry import DataDependent, NodeContext
from walle_core.ir.errors import ShapeError
from walle_core.ir.graph import Graph, Node

if TYPE_CHECKING:
    from walle_core.runtime.planner import Planner


def lower(planner: Planner, node: Node, ctx: NodeContext) -> list[int]:
    if node.op_type == "If":
        cond = ctx.need_const(0)
        branch: Graph = node.attrs["then_branch" if bool(cond.reshape(-1)[0]) else "else_branch"]
        sub = planner.__class__(planner.graph, planner.backend, planner.builder, planner.env)
        sub.eager = planner.eager
        sub.run_nodes(branch.nodes)
        return [sub.slot(v) for v in branch.outputs]
    values = [ctx.const(i) if ctx.has(i) else None for i in range(len(ctx.inputs))]
    if any(ctx.has(i) and v is None for i, v in enumerate(values)):
        raise DataDependent(f"{node.op_type} node {node.name!r} depends on feed data")
    results = run_loop(planner, node, values) if node.op_type == "Loop" else run_scan(
        planner, node, values)
    return [planner.builder.const_slot(r) for r in results]


def evaluate(planner: Planner, body: Graph, args: list[Any]) -> list[Any]:
    """Outputs of ``body`` with its inputs bound to the constants ``args``."""
    sub = planner.__class__(planner.graph, planner.backend, planner.builder, dict(planner.env))
    sub.eager = True
    for value, arg in zip(body.inputs, args, strict=False):
        sub.env[id(value)] = planner.builder.const_slot(arg)
    sub.run_nodes(body.nodes)
    out = []
    for v in body.outputs:
        slot = sub.slot(v)
        if slot not in planner.builder.consts:
            raise DataDependent("loop body output not constant")
        out.append(planner.builder.consts[slot])
    return out


def run_loop(planner: Planner, node: Node, values: list[Any]) -> list[Any]:
    body: Graph = node.attrs["body"]
    trip = int(np.asarray(values[0]).reshape(-1)[0]) if values[0] is not None else 2**62
    cond = bool(np.asarray(values[1]).reshape(-1)[0]) if len(values) > 1 and values[1] is not None \
        else True
    carried = list(values[2:])
    n_carried = len(carried)
    scans: list[list[Any]] = [[] for _ in range(len(body.outputs) - 1 - n_carried)]
    i = 0
    while i < trip and cond:
        outs = evaluate(planner, body, [np.array(i, dtype=np.int64), np.array(cond), *carried])
        cond = bool(np.asarray(outs[0]).reshape(-1)[0])
        carried = outs[1:1 + n_carried]
        for acc, v in zip(scans, outs[1 + n_carried:], strict=True):
            acc.append(v)
        i += 1
        if i > 1_000_000:
            raise ShapeError(f"Loop node {node.name!r} ran more than a million iterations")
    stacked = []
    for k, acc in enumerate(scans):
        if acc:
            stacked.append(np.stack([np.asarray(a) for a in acc]))
        else:
            dtype = body.outputs[1 + n_carried + k].type
            np_dtype = dtype.dtype.np if dtype is not None else np.float32
            stacked.append(np.zeros((0,), dtype=np_dtype))
    return carried + stacked


def run_scan(planner: Planner, node: Node, values: list[Any]) -> list[Any]:
    body: Graph = node.attrs["body"]
    n_scan = int(node.attrs["num_scan_inputs"])
    n_state = len(values) - n_scan
    state, xs = list(values[:n_state]), [np.asarray(v) for v in values[n_state:]]
    in_axes = node.attrs.get("scan_input_axes") or [0] * n_scan
    in_dirs = node.attrs.get("scan_input_directions") or [0] * n_scan
    xs = [np.moveaxis(x, a, 0) for x, a in zip(xs, in_axes, strict=True)]
    xs = [x[::-1] if d else x for x, d in zip(xs, in_dirs, strict=True)]
    steps = xs[0].shape[0] if xs else 0
    n_out = len(body.outputs) - n_state
    accs: list[list[Any]] = [[] for _ in range(n_out)]
    for t in range(steps):
        outs = evaluate(planner, body, [*state, *(x[t] for x in xs)])
        state = outs[:n_state]
        for acc, v in zip(accs, outs[n_state:], strict=True):
            acc.append(np.asarray(v))
    out_axes = node.attrs.get("scan_output_axes") or [0] * n_out
    out_dirs = node.attrs.get("scan_output_directions") or [0] * n_out
    results = []
    for acc, a, d in zip(accs, out_axes, out_dirs, strict=True):
        y = np.stack(acc[::-1] if d else acc)
        results.append(np.moveaxis(y, 0, a if a >= 0 else a + y.ndim))
    return state + results
