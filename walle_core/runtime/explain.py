"""What ``walle model inspect`` and ``walle model explain`` report, as plain data.

Inspect describes the model as written (inputs, outputs, op histogram, parameters) plus a FLOPs
estimate from the planned primitives; explain shows what the engine made of it: ops before and
after decomposition, rasters and regions left after fusion, folded nodes and the memory plan.
Symbolic dims are taken as 1 unless the caller gives shapes.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from walle_core.ir.graph import Graph
from walle_core.ir.primitives import Elementwise, MatMul, Raster, Reduce, Step, TensorSpec


def default_specs(graph: Graph, dims: dict[str, int] | None = None) -> dict[str, TensorSpec]:
    dims = dims or {}
    specs = {}
    for v in graph.real_inputs():
        if v.type is None or v.type.shape is None:
            continue
        shape = tuple(d if isinstance(d, int) else dims.get(str(d), 1) for d in v.type.shape)
        specs[v.name] = TensorSpec(shape, v.type.dtype)
    return specs


def _expr_ops(expr: Any) -> int:
    if expr[0] in ("in", "const"):
        return 0
    return 1 + sum(_expr_ops(e) for e in expr[1:])


def step_flops(step: Step, slots: list[TensorSpec]) -> int:
    prim = step.prim
    out = slots[step.outputs[0]]
    if isinstance(prim, MatMul):
        a = slots[step.inputs[0]].shape
        k = a[-2] if prim.trans_a else a[-1]
        return 2 * out.size * k
    if isinstance(prim, Elementwise):
        return out.size * _expr_ops(prim.expr)
    if isinstance(prim, Reduce):
        return slots[step.inputs[0]].size
    return 0


def inspect_model(graph: Graph) -> dict[str, Any]:
    from walle_core.runtime.session import _info

    info: dict[str, Any] = {
        "inputs": [_info(v).__dict__ for v in graph.real_inputs()],
        "outputs": [_info(v).__dict__ for v in graph.outputs],
        "opsets": graph.opsets,
        "nodes": len(graph.walk()),
        "op_histogram": dict(graph.op_histogram().most_common()),
        "parameters": graph.parameter_count(),
    }
    try:
        from walle_core.runtime.backends import create_backend
        from walle_core.runtime.planner import plan

        program = plan(graph, create_backend("reference"), default_specs(graph))
        info["flops"] = int(sum(step_flops(s, program.slots) for s in program.steps))
        weights = {s for st in program.steps for s in st.inputs if s in program.builder.consts}
        info["parameters_after_folding"] = int(sum(
            np.asarray(program.builder.consts[s]).size for s in weights
            if isinstance(program.builder.consts[s], np.ndarray)))
    except Exception as exc:  # data-dependent shapes: no static estimate
        info["flops"] = None
        info["flops_note"] = f"not estimated: {exc}"
    return info


def explain_session(session: Any, dims: dict[str, int] | None = None) -> dict[str, Any]:
    graph = session.graph
    exe = session.executable(default_specs(graph, dims))
    report: dict[str, Any] = {
        "backend": session.backend.name,
        "ops_before": dict(graph.op_histogram().most_common()),
    }
    if exe is None:
        report["note"] = "output shapes depend on input data: planned eagerly at run time"
        return report
    program = exe.program
    kinds = Counter(s.prim.kind for s in program.steps)
    rasters = [s for s in program.steps if isinstance(s.prim, Raster)]
    report.update({
        "primitives_after": dict(kinds.most_common()),
        "native_kernels": dict(Counter(
            getattr(s.prim, "op_type", "") for s in program.steps if s.prim.kind == "Kernel")),
        "raster_copies_left": len(rasters),
        "regions_left": sum(len(getattr(s.prim, "regions", ())) for s in rasters),
        "steps_folded_at_plan_time": program.stats.get("folded", 0),
        "identity_copies_aliased": program.stats.get("aliases", 0),
        "regions_fused": program.stats.get("regions_fused", 0),
        "elementwise_fused": program.stats.get("elementwise_fused", 0),
        "epilogues_fused": program.stats.get("epilogues_fused", 0),
        "flops": int(sum(step_flops(s, program.slots) for s in program.steps)),
        "peak_memory_bytes": exe.memory.arena_bytes,
        "memory_without_reuse_bytes": exe.memory.unshared_bytes,
    })
    return report
