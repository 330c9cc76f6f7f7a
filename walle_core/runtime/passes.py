"""Program passes after lowering: aliasing, region fusion, elementwise fusion, dead code.

Order matters: identity copies become aliases first (so view chains become visible), then
rasters fuse through single views, Elementwise chains inline into one expression, activations
move into the MatMul epilogue, and steps nobody reads are dropped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from walle_core.geometry.fusion import consumers, fuse_rasters, identity_aliases
from walle_core.ir.primitives import Elementwise, Expr, Kernel, MatMul
from walle_core.runtime.planner import Program


def apply_aliases(program: Program) -> dict[int, int]:
    steps = program.builder.steps
    alias = identity_aliases(steps, program.slots)
    consts = program.builder.consts
    program.builder.steps = [s for s in steps if not (s.outputs and s.outputs[0] in alias)]
    for dst, src in list(alias.items()):
        if src in consts:
            consts[dst] = consts[src].reshape(program.slots[dst].shape)
            del alias[dst]
    program.aliases = alias
    program.stats["aliases"] = len(alias)
    return alias


def _shift_expr(expr: Expr, mapping: dict[int, Expr]) -> Expr:
    if expr[0] == "in":
        return mapping[expr[1]]
    if expr[0] == "const":
        return expr
    return (expr[0], *(_shift_expr(e, mapping) for e in expr[1:]))


def fuse_elementwise(program: Program, protected: set[int]) -> int:
    """Inline an Elementwise into its only consumer when shapes and dtypes agree."""
    steps = program.builder.steps
    slots = program.slots
    fused = 0
    changed = True
    while changed:
        changed = False
        uses = consumers(steps)
        producer = {s: st for st in steps for s in st.outputs}
        for step in steps:
            if not isinstance(step.prim, Elementwise):
                continue
            for k, slot in enumerate(step.inputs):
                prod = producer.get(slot)
                if (prod is None or not isinstance(prod.prim, Elementwise) or uses[slot] != 1
                        or slot in protected or slots[slot] != slots[step.outputs[0]]
                        or prod.prim.compute != step.prim.compute
                        or any(slots[s].dtype != slots[slot].dtype for s in prod.inputs)):
                    continue
                inputs = [s for j, s in enumerate(step.inputs) if j != k]
                mapping: dict[int, Expr] = {}
                old_map = {j: ("in", inputs.index(s)) for j, s in enumerate(step.inputs)
                           if j != k}
                for j, s in enumerate(prod.inputs):
                    if s not in inputs:
                        inputs.append(s)
                    mapping[j] = ("in", inputs.index(s))
                old_map[k] = _shift_expr(prod.prim.expr, mapping)
                step.prim = Elementwise(_shift_expr(step.prim.expr, old_map), step.prim.compute)
                step.inputs = inputs
                steps.remove(prod)
                fused += 1
                changed = True
                break
            if changed:
                break
    return fused


def fuse_epilogues(program: Program, protected: set[int],
                   kernel_ops: set[tuple[str, str]] | None = None) -> int:
    """MatMul (or a native Kernel in ``kernel_ops``, e.g. Conv) followed by relu/clip on its
    result only: fold into its epilogue."""
    kernel_ops = kernel_ops or set()
    steps = program.builder.steps
    uses = consumers(steps)
    producer = {s: st for st in steps for s in st.outputs}
    fused = 0
    for step in list(steps):
        prim = step.prim
        if not isinstance(prim, Elementwise) or not step.inputs:
            continue
        src = step.inputs[0]
        prod = producer.get(src)
        if prod is None:
            continue
        is_kernel = isinstance(prod.prim, Kernel) and \
            (prod.prim.domain, prod.prim.op_type) in kernel_ops and \
            "fused_activation" not in prod.prim.attrs and prod.outputs and prod.outputs[0] == src
        if not is_kernel and (not isinstance(prod.prim, MatMul) or prod.prim.activation):
            continue
        if uses[src] != 1 or src in protected or program.slots[src] != program.slots[
                step.outputs[0]]:
            continue
        act = _activation(prim.expr, step.inputs, program.builder.consts)
        if act is None:
            continue
        if isinstance(prod.prim, Kernel):
            k = prod.prim
            attrs = {**k.attrs, "fused_activation": act[0], "fused_act_params": tuple(act[1])}
            prod.prim = Kernel(k.op_type, k.domain, attrs, k.opset)
            prod.outputs = [step.outputs[0], *prod.outputs[1:]]
        else:
            m = prod.prim
            assert isinstance(m, MatMul)
            prod.prim = MatMul(m.trans_a, m.trans_b, m.alpha, m.beta, act[0], act[1])
            prod.outputs = list(step.outputs)
        steps.remove(step)
        fused += 1
    return fused


def _activation(expr: Expr, inputs: list[int], consts: dict[int, Any]
                ) -> tuple[str, tuple[Any, ...]] | None:
    """The activation an Elementwise applies to its input 0, when it is one an epilogue can
    take: relu, or a clip by scalar constants (inline, or constant scalar inputs as Clip-11+
    decomposes to ``min(max(x, lo), hi)``)."""

    def scalar(e: Expr) -> Any:
        if e[0] == "const":
            return e[1]
        if e[0] == "in" and e[1] > 0:
            value = consts.get(inputs[e[1]])
            if isinstance(value, np.ndarray) and value.size == 1:
                return value.reshape(()).item()
        return None

    x = ("in", 0)
    if expr == ("relu", x):
        return ("relu", ())
    if expr[0] == "clip" and expr[1] == x:
        lo, hi = scalar(expr[2]), scalar(expr[3])
        if lo is not None and hi is not None:
            return ("clip", (lo, hi))
    if expr[0] == "min" and expr[1][0] == "max" and expr[1][1] == x:
        lo, hi = scalar(expr[1][2]), scalar(expr[2])
        if lo is not None and hi is not None:
            return ("clip", (lo, hi))
    if expr[0] == "max" and expr[1] == x and scalar(expr[2]) == 0:
        return ("relu", ())
    return None


def dead_code(program: Program) -> None:
    needed = {program.root(s) for _, s in program.outputs}
    kept = []
    for step in reversed(program.builder.steps):
        if any(s in needed for s in step.outputs):
            kept.append(step)
            needed.update(program.root(s) for s in step.inputs if s >= 0)
    program.builder.steps = kept[::-1]


def optimize(program: Program, kernel_activations: set[tuple[str, str]] | None = None) -> None:
    apply_aliases(program)
    protected = {program.root(s) for _, s in program.outputs} | set(program.aliases.values())
    rasters_before = sum(1 for s in program.steps if s.prim.kind == "Raster")
    program.stats["regions_fused"] = fuse_rasters(program.steps, program.slots, program.aliases)
    dead_code(program)
    program.stats["rasters_removed"] = rasters_before - sum(
        1 for s in program.steps if s.prim.kind == "Raster")
    program.stats["elementwise_fused"] = fuse_elementwise(program, protected)
    program.stats["epilogues_fused"] = fuse_epilogues(program, protected, kernel_activations)
    dead_code(program)
