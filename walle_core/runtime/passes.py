"""Program passes after lowering: aliasing, region fusion, elementwise fusion, dead code.

Order matters: identity copies become aliases first (so view chains become visible), then
rasters fuse through single views, Elementwise chains inline into one expression, activations
move into the MatMul epilogue, and steps nobody reads are dropped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from walle_core.geometry.fusion import consumers, fuse_rasters, identity_aliases
from walle_core.ir.primitives import Elementwise, Expr, Kernel, MatMul, contiguous
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


def _row_vector(slot: int, n: int, program: Program, producer: dict[int, Any]
                ) -> np.ndarray | None:
    """The [n] vector whose broadcast over rows the slot holds, when that is known at plan time
    (a constant, or a Raster of constants: a bias Add's broadcast), else None. Checked on the
    values themselves, so any raster that happens to be a row broadcast qualifies and nothing
    else does."""
    from walle_core.ir.primitives import Raster

    consts = program.builder.consts
    spec = program.slots[slot]
    if n <= 0 or spec.size % n:
        return None
    value = consts.get(slot)
    if value is None:
        prod = producer.get(slot)
        if prod is None or not isinstance(prod.prim, Raster) or len(prod.outputs) != 1 or \
                not all(s in consts for s in prod.inputs) or spec.nbytes > 64 << 20:
            return None
        from walle_core.reference_backend import execute

        value = np.empty(spec.shape, spec.dtype.np)
        execute(prod.prim, [consts[s] for s in prod.inputs], [value])
    if not isinstance(value, np.ndarray) or value.dtype != spec.dtype.np:
        return None
    rows = value.reshape(-1, n)
    if not (rows == rows[:1]).all():
        return None
    return np.ascontiguousarray(rows[0])


def fuse_matmul_bias(program: Program, protected: set[int]) -> int:
    """``add(MatMul(a, b), bias)`` inside an Elementwise, with a bias known at plan time to be a
    row vector (a constant, or the Raster that broadcasts one): the MatMul takes the vector as
    its bias (added in its epilogue), and the Elementwise loses that add (and the step with
    it, when nothing else is left). Saves the broadcast copy and a pass over the output: the
    bias of every transformer projection was materialised at full size and added separately.
    """
    steps = program.builder.steps
    uses = consumers(steps)
    producer = {s: st for st in steps for s in st.outputs}
    fused = 0
    for step in list(steps):
        if not isinstance(step.prim, Elementwise):
            continue
        found = _bias_add(step, program, protected, uses, producer)
        if found is None:
            continue
        add, mm_in, vector = found
        # every occurrence of that add (GELU reads x = MatMul + bias three times) becomes the
        # MatMul's output; a use of the MatMul's output without the bias forbids the fusion
        marker: Expr = ("in", -1)
        swapped = ("add", add[2], add[1])
        expr = _replace_all(step.prim.expr, [(add, marker), (swapped, marker)])
        if any(_same(t, ("in", mm_in)) for t in _subtrees(expr)):
            continue
        expr = _replace_all(expr, [(marker, ("in", mm_in))])
        mm = producer[step.inputs[mm_in]]
        m = mm.prim
        assert isinstance(m, MatMul)
        mm.inputs = [*mm.inputs[:2], program.builder.const_slot(vector)]
        mm.prim = MatMul(m.trans_a, m.trans_b, m.alpha, 1.0, m.activation, m.act_params)
        used = sorted(_inputs_of(expr))
        remap = {old: ("in", new) for new, old in enumerate(used)}
        if expr == ("in", mm_in) and program.slots[mm.outputs[0]] == program.slots[
                step.outputs[0]]:
            mm.outputs = list(step.outputs)  # the Elementwise was only the bias add
            steps.remove(step)
        else:
            step.prim = Elementwise(_shift_expr(expr, remap), step.prim.compute)
            step.inputs = [step.inputs[i] for i in used]
        fused += 1
        uses = consumers(steps)
        producer = {s: st for st in steps for s in st.outputs}
    return fused


def _bias_add(step: Any, program: Program, protected: set[int], uses: dict[int, int],
              producer: dict[int, Any]) -> tuple[Expr, int, np.ndarray] | None:
    """(the add node, input index of the MatMul operand, bias vector) or None."""
    assert isinstance(step.prim, Elementwise)
    out_spec = program.slots[step.outputs[0]]

    def matmul_input(e: Expr) -> int | None:
        if e[0] != "in":
            return None
        slot = step.inputs[e[1]]
        prod = producer.get(slot)
        if prod is None or not isinstance(prod.prim, MatMul) or prod.prim.activation:
            return None
        if (len(prod.inputs) > 2 and prod.inputs[2] >= 0) or uses.get(slot, 0) != 1 or \
                slot in protected or prod.outputs[0] != slot or \
                program.slots[slot].shape != out_spec.shape:
            return None
        return int(e[1])

    def walk(e: Expr) -> tuple[Expr, int, np.ndarray] | None:
        if e[0] == "add":
            for a, b in ((e[1], e[2]), (e[2], e[1])):
                k = matmul_input(a)
                if k is None or b[0] != "in":
                    continue
                mm_slot = step.inputs[k]
                vec = _row_vector(step.inputs[b[1]], program.slots[mm_slot].shape[-1],
                                  program, producer)
                if vec is not None and vec.dtype == program.slots[mm_slot].dtype.np:
                    return e, k, vec
        if e[0] in ("in", "const"):
            return None
        for sub in e[1:]:
            if isinstance(sub, tuple):
                hit = walk(sub)
                if hit is not None:
                    return hit
        return None

    return walk(step.prim.expr)


def _same(a: Any, b: Any) -> bool:
    """Structural equality of expressions (constants may be numpy values)."""
    if a is b:
        return True
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _replace_all(e: Expr, table: list[tuple[Expr, Expr]]) -> Expr:
    for old, new in table:
        if _same(e, old):
            return new
    if e[0] in ("in", "const"):
        return e
    return (e[0], *(_replace_all(s, table) if isinstance(s, tuple) else s for s in e[1:]))


def _subtrees(e: Expr) -> list[Expr]:
    out = [e]
    if e[0] not in ("in", "const"):
        for s in e[1:]:
            if isinstance(s, tuple):
                out += _subtrees(s)
    return out


def _inputs_of(e: Expr) -> set[int]:
    if e[0] == "in":
        return {int(e[1])}
    if e[0] == "const":
        return set()
    out: set[int] = set()
    for sub in e[1:]:
        if isinstance(sub, tuple):
            out |= _inputs_of(sub)
    return out


def fuse_residual_adds(program: Program, protected: set[int],
                       kernel_ops: set[tuple[str, str]]) -> int:
    """``act(add(Kernel(...), r))`` as one Elementwise (a ResNet block's Relu of Conv plus
    shortcut), the Kernel's output read by nothing else: the Kernel takes ``r`` as a fused
    residual (``attrs["fused_add"]``, ``r`` appended to its inputs after any missing optional
    ones as -1) and the activation, and moves to the Elementwise's place (where ``r`` is
    ready); the Elementwise goes. Its epilogue then adds bias, residual and activation in one
    pass instead of a pass for the bias and another for the add. Only ops every candidate
    backend declares in ``fused_adds()`` (``kernel_ops``)."""
    steps = program.builder.steps
    slots = program.slots
    consts = program.builder.consts
    uses = consumers(steps)
    producer = {s: st for st in steps for s in st.outputs}
    fused = 0
    for step in list(steps):
        if not isinstance(step.prim, Elementwise) or len(step.outputs) != 1:
            continue
        out = step.outputs[0]
        expr = step.prim.expr
        add = expr if expr[0] == "add" else (
            expr[1] if expr[0] in ("relu", "max", "min") and isinstance(expr[1], tuple) and
            expr[1][0] == "add" else None)
        if add is None and expr[0] == "min" and isinstance(expr[1], tuple) and \
                expr[1][0] == "max" and isinstance(expr[1][1], tuple) and expr[1][1][0] == "add":
            add = expr[1][1]  # clip as min(max(add, lo), hi)
        if add is None or add[1][0] != "in" or add[2][0] != "in":
            continue
        act: tuple[str, tuple[Any, ...]] = ("", ())
        if add is not expr:
            found = _activation(_replace_all(expr, [(add, ("in", 0))]), step.inputs, consts)
            if found is None:
                continue
            act = found
        for k_in, r_in in ((add[1][1], add[2][1]), (add[2][1], add[1][1])):
            ks, rs = step.inputs[k_in], step.inputs[r_in]
            kern = producer.get(ks)
            if kern is None or not isinstance(kern.prim, Kernel) or \
                    (kern.prim.domain, kern.prim.op_type) not in kernel_ops or \
                    "fused_activation" in kern.prim.attrs or "fused_add" in kern.prim.attrs or \
                    kern.outputs[0] != ks or uses.get(ks, 0) != 1 or ks in protected or \
                    ks == rs or slots[ks] != slots[out] or slots[rs] != slots[out]:
                continue
            others = [s for i, s in enumerate(step.inputs) if i not in (k_in, r_in)]
            if not all(s in consts for s in others):
                continue  # anything but the activation's bounds would be lost
            attrs = {**kern.prim.attrs, "fused_add": True}
            if act[0]:
                attrs["fused_activation"] = act[0]
                attrs["fused_act_params"] = tuple(act[1])
            k = kern.prim
            kern.prim = Kernel(k.op_type, k.domain, attrs, k.opset)
            kern.inputs = [*kern.inputs, *([-1] * (3 - len(kern.inputs))), rs]
            kern.outputs = [out, *kern.outputs[1:]]
            steps.remove(kern)  # it runs where the Elementwise ran: the residual is ready there
            steps[steps.index(step)] = kern
            fused += 1
            uses = consumers(steps)
            producer = {s: st for st in steps for s in st.outputs}
            break
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


def concat_in_place(program: Program, protected: set[int]) -> int:
    """A Raster that only stacks whole tensors into contiguous blocks of its output (a Concat
    on the outermost non-unit axis: channels at batch 1) needs no copy: each part's producer
    writes straight into its block. The parts become aliases of the output at byte offsets
    (``program.alias_offsets``) and the Raster is dropped. Chains compose: DenseNet's
    concatenation of a concatenation lands every layer's 32 channels in one block buffer.

    A part qualifies when a step produces it (not a feed or constant), it is not a graph
    output nor placed inside another tensor already (views of it move with it), and this
    Raster is its only concatenation. Its
    other readers (DenseNet's BatchNorm reads the previous concatenation) read it in place.
    Only for host memory (the caller says): device buffers cannot all be viewed at any offset.
    """
    from walle_core.ir.primitives import Raster

    steps = program.builder.steps
    slots = program.slots
    consts = program.builder.consts
    produced = {s for st in steps for s in st.outputs}
    claimed: set[int] = set()
    done = 0
    for step in list(steps):
        prim = step.prim
        if not isinstance(prim, Raster) or prim.fill is not None or prim.accumulate or \
                len(step.outputs) != 1 or not prim.regions:
            continue
        out = step.outputs[0]
        item = slots[out].dtype.itemsize
        parts: list[tuple[int, int]] = []
        covered = 0
        for r in prim.regions:
            src = step.inputs[r.src]
            spec = slots[src]
            if src in parts or src in claimed or src in consts or src not in produced or \
                    src in protected or src in program.aliases or src == out or \
                    spec.dtype != slots[out].dtype or r.src_offset != 0 or \
                    r.count != spec.size or not contiguous(r.size, r.src_strides) or \
                    not contiguous(r.size, r.dst_strides):
                break
            parts.append((src, r.dst_offset * item))
            covered += r.count
        else:
            ends = sorted((o, o + slots[s].nbytes) for s, o in parts)
            disjoint = all(a[1] <= b[0] for a, b in zip(ends, ends[1:], strict=False))
            if not disjoint or covered != slots[out].size or \
                    len({s for s, _ in parts}) != len(parts):
                continue
            root = program.root(out)
            base = program.alias_offsets.get(out, 0)
            for src, offset in parts:
                program.aliases[src] = root
                program.alias_offsets[src] = base + offset
                claimed.add(src)
                # slots already placed inside this part (an earlier concatenation's parts)
                for s, at in list(program.aliases.items()):
                    if at == src:
                        program.aliases[s] = root
                        program.alias_offsets[s] = base + offset + program.alias_offsets.get(s, 0)
            steps.remove(step)
            done += 1
    return done


def dead_code(program: Program) -> None:
    needed = {program.root(s) for _, s in program.outputs}
    kept = []
    for step in reversed(program.builder.steps):
        if any(s in needed or program.root(s) in needed for s in step.outputs):
            kept.append(step)
            needed.update(program.root(s) for s in step.inputs if s >= 0)
    program.builder.steps = kept[::-1]


def optimize(program: Program, kernel_activations: set[tuple[str, str]] | None = None,
             host_only: bool = False, kernel_adds: set[tuple[str, str]] | None = None,
             channels_last: set[tuple[str, str]] | None = None, retire: Any = None) -> None:
    """``host_only``: every backend the program may be placed on works in host memory (so
    tensors may live at any offset inside another: in-place concatenation).
    ``channels_last``: the ops every backend running them natively also runs channels-last
    (``layout.channels_last`` converts chains of depthwise and 1x1 Convs when Conv is one;
    ``retire`` is its callback for the weight arrays it replaces)."""
    apply_aliases(program)
    protected = {program.root(s) for _, s in program.outputs} | set(program.aliases.values())
    rasters_before = sum(1 for s in program.steps if s.prim.kind == "Raster")
    program.stats["regions_fused"] = fuse_rasters(program.steps, program.slots, program.aliases)
    dead_code(program)
    program.stats["rasters_removed"] = rasters_before - sum(
        1 for s in program.steps if s.prim.kind == "Raster")
    program.stats["elementwise_fused"] = fuse_elementwise(program, protected)
    program.stats["matmul_bias_fused"] = fuse_matmul_bias(program, protected)
    dead_code(program)  # the broadcast rasters the bias adds read
    program.stats["residual_adds_fused"] = fuse_residual_adds(program, protected,
                                                              kernel_adds or set())
    program.stats["epilogues_fused"] = fuse_epilogues(program, protected, kernel_activations)
    dead_code(program)
    if host_only and channels_last and ("", "Conv") in channels_last:
        from walle_core.runtime.layout import channels_last as convert

        program.stats.update(convert(program, protected, retire, channels_last))
        dead_code(program)  # transposes whose readers now read the channels-last tensor
    if host_only:
        program.stats["concats_in_place"] = concat_in_place(program, protected)
