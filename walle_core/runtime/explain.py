"""What ``walle model inspect`` and ``walle model explain`` report, as plain data.

Inspect describes the model as written (inputs, outputs, op histogram, parameters) plus a FLOPs
estimate from the planned primitives; explain shows what the engine made of it: ops before and
after decomposition, rasters and regions left after fusion, folded nodes and the memory plan.
Symbolic dims are taken as 1 unless the caller gives shapes.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np

from walle_core.ir.graph import Graph
from walle_core.ir.primitives import (
    Elementwise,
    MatMul,
    Raster,
    Reduce,
    Step,
    TensorSpec,
    expr_ops,
)


def default_specs(graph: Graph, dims: dict[str, int] | None = None) -> dict[str, TensorSpec]:
    dims = dims or {}
    specs = {}
    for v in graph.real_inputs():
        if v.type is None or v.type.shape is None:
            continue
        shape = tuple(d if isinstance(d, int) else dims.get(str(d), 1) for d in v.type.shape)
        specs[v.name] = TensorSpec(shape, v.type.dtype)
    return specs



def step_flops(step: Step, slots: list[TensorSpec]) -> int:
    prim = step.prim
    out = slots[step.outputs[0]]
    if isinstance(prim, MatMul):
        a = slots[step.inputs[0]].shape
        k = a[-2] if prim.trans_a else a[-1]
        return 2 * out.size * k
    if isinstance(prim, Elementwise):
        return out.size * expr_ops(prim.expr)
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


def explain_session(session: Any, dims: dict[str, int] | None = None,
                    measure_runs: int = 0) -> dict[str, Any]:
    """The report of ``walle model explain``; ``measure_runs`` > 0 also times every op (median
    of that many runs on random inputs) beside the search's estimate."""
    graph = session.graph
    specs = default_specs(graph, dims)
    t0 = time.perf_counter()
    exe = session.executable(specs)
    plan_seconds = time.perf_counter() - t0
    report: dict[str, Any] = {
        "backend": session.backend.name,
        "candidates": [b.name for b in session.backends],
        "fallback": [b.name for b in session.fallback],
        "ops_before": session.ops_before,
        **session.graph_stats,
    }
    if session.notes:
        report["backend_notes"] = list(session.notes)
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
        "channels_last_convs": program.stats.get("channels_last_convs", 0),
        "channels_last_pools": program.stats.get("channels_last_pools", 0),
        "layout_transposes": program.stats.get("layout_transposes", 0),
        "flops": int(sum(step_flops(s, program.slots) for s in program.steps)),
        "peak_memory_bytes": exe.arena_bytes,
        "memory_without_reuse_bytes": sum(m.unshared_bytes for m in exe.memories.values()),
    })
    report["search"] = search_report(exe, plan_seconds)
    report["steps"] = step_rows(exe, specs, measure_runs)
    if measure_runs:
        report["search"]["measured_ms"] = round(
            sum(r["measured_us"] for r in report["steps"]) / 1e3, 3)
    return report


def search_report(exe: Any, plan_seconds: float) -> dict[str, Any]:
    placement = exe.placement
    per_backend = Counter(op.backend.name for op in exe.ops if op.index >= 0)
    return {
        "method": placement.method,
        "search_seconds": round(placement.seconds, 4),
        "plan_seconds": round(plan_seconds, 4),
        "steps_per_backend": dict(per_backend.most_common()),
        "transfers": exe.transfers,
        "estimated_ms": round(placement.estimated_seconds * 1e3, 3),
        "estimated_transfer_ms": round(placement.transfer_seconds * 1e3, 3),
        "notes": list(placement.notes),
    }


def step_rows(exe: Any, specs: dict[str, TensorSpec], measure_runs: int) -> list[dict[str, Any]]:
    """One row per op in run order: what runs it, with which algorithm, estimated (and
    measured) microseconds, and the alternatives the search costed."""
    measured: list[float] | None = None
    if measure_runs:
        rng = np.random.default_rng(0)
        feeds = {n: _random(rng, s) for n, s in specs.items()}
        measured = exe.profile(feeds, measure_runs)
    placement = exe.placement
    rows = []
    for k, op in enumerate(exe.ops):
        prim = op.step.prim
        kind = prim.kind if prim.kind != "Kernel" else f"Kernel:{prim.op_type}"
        row: dict[str, Any] = {"op": op.step.origin, "primitive": kind,
                               "backend": op.backend.name}
        if op.index < 0:
            nbytes = exe.slots[op.step.inputs[0]].nbytes
            row.update(primitive="Transfer", algorithm=f"{prim.src_domain} -> {prim.dst_domain}",
                       bytes=nbytes)
        else:
            alg = placement.algorithms[op.index]
            row["algorithm"] = alg.name
            row["estimated_us"] = round(alg.cost * 1e6, 2)
            if alg.params:
                row["params"] = {k2: v for k2, v in alg.params}
            if alg.note:
                row["why"] = alg.note
            alts = placement.candidates[op.index]
            if len(alts) > 1:
                row["alternatives"] = [f"{b}/{a.name}: {a.cost * 1e6:.1f}us" for b, a in alts]
        if measured is not None:
            row["measured_us"] = round(measured[k] * 1e6, 2)
        rows.append(row)
    return rows


def _random(rng: np.random.Generator, spec: TensorSpec) -> np.ndarray:
    if spec.dtype.name == "bool":
        return rng.integers(0, 2, spec.shape).astype(bool)
    if np.issubdtype(spec.dtype.np, np.integer):
        return rng.integers(0, 3, spec.shape).astype(spec.dtype.np)
    return rng.standard_normal(spec.shape).astype(spec.dtype.np)
