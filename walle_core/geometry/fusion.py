"""Region fusion: collapse chains of views so data moves once.

If raster R1 writes slot S from X with one region whose destination is a permutation of
row-major order (a bijection onto S), a region of R2 reading S at ``f = o + sum a_m t_m`` reads
X at an affine address too, provided every step ``t_m`` moves along a single dim of S without
carrying into the next: ``t_m = q_m * ds_d`` with the dim's index staying in ``[0, size_d)``.
Then the composed region is ``X[src_off(start) + sum a_m q_m ss_d]``. Identity rasters (the
whole buffer copied unchanged: Reshape, Flatten, ...) are removed by aliasing instead.
"""

from __future__ import annotations

from collections import defaultdict

from walle_core.ir.primitives import Raster, Region, Step, TensorSpec

Dims = list[tuple[int, int, int]]  # (size, dst stride, src stride)


def _bijective_dims(r: Region, size: int) -> Dims | None:
    if r.dst_offset != 0 or r.count != size:
        return None
    dims = sorted(((n, d, s) for n, d, s in zip(r.size, r.dst_strides, r.src_strides,
                                                 strict=True) if n > 1), key=lambda t: -t[1])
    expect = 1
    for n, d, _ in reversed(dims):
        if d != expect:
            return None
        expect *= n
    return dims


def _split(dims: list[tuple[int, int, int]], inner: Dims) -> list[tuple[int, int, int]] | None:
    """Split outer dims (src step, size, dst step) that walk across several inner dims in unit
    steps into one dim per inner dim, so that each moves along a single inner dim."""
    out: list[tuple[int, int, int]] = []
    work = list(dims)
    while work:
        t, n, dt = work.pop(0)
        if n == 1 or t == 0:
            out.append((t, n, dt))
            continue
        for size, d, _src in inner:
            if abs(t) == d and n > size and n % size == 0:
                out.append((t, size, dt))
                work.insert(0, (t * size, n // size, dt * size))
                break
        else:
            out.append((t, n, dt))
    return out


def compose(outer: Region, inner: Region, dims: Dims, new_src: int) -> Region | None:
    """``outer`` reads what ``inner`` wrote; the equivalent region reading inner's source."""
    start, rest = [], outer.src_offset
    for _, d, _ in dims:
        start.append(rest // d)
        rest %= d
    if rest != 0 or any(s >= n for s, (n, _, _) in zip(start, dims, strict=True)):
        return None
    walks = _split(list(zip(outer.src_strides, outer.size, outer.dst_strides, strict=True)), dims)
    if walks is None:
        return None
    walks = [w for w in walks if w[1] > 1]
    if len(walks) > 3:
        return None
    lo, hi = list(start), list(start)
    mapped: list[tuple[int, int, int]] = []
    for t, n, dt in walks:
        if t == 0:
            mapped.append((0, n, dt))
            continue
        for k, (size, d, s) in enumerate(dims):
            if abs(t) % d == 0 and abs(t) // d < size:
                q = t // d
                lo[k] += min(0, q * (n - 1))
                hi[k] += max(0, q * (n - 1))
                mapped.append((q * s, n, dt))
                break
        else:
            return None
    if any(a < 0 or b >= dims[k][0] for k, (a, b) in enumerate(zip(lo, hi, strict=True))):
        return None
    while len(mapped) < 3:
        mapped.insert(0, (0, 1, 0))
    offset = inner.src_offset + sum(i * s for i, (_, _, s) in zip(start, dims, strict=True))
    return Region(new_src, offset, (mapped[0][0], mapped[1][0], mapped[2][0]), outer.dst_offset,
                  (mapped[0][2], mapped[1][2], mapped[2][2]),
                  (mapped[0][1], mapped[1][1], mapped[2][1]))


def _single_view(step: Step, slots: list[TensorSpec]) -> tuple[Region, Dims] | None:
    prim = step.prim
    if not isinstance(prim, Raster) or prim.fill is not None or prim.accumulate:
        return None
    if len(prim.regions) != 1:
        return None
    dims = _bijective_dims(prim.regions[0], slots[step.outputs[0]].size)
    return None if dims is None else (prim.regions[0], dims)


def fuse_rasters(steps: list[Step], slots: list[TensorSpec],
                 aliases: dict[int, int] | None = None) -> int:
    """Rewrite rasters that read single-view rasters to read the views' sources; count them.
    ``aliases`` maps slots to the slot whose memory (same flat layout) they share."""
    aliases = aliases or {}
    producer = {s: step for step in steps for s in step.outputs}
    fused = 0
    for step in steps:
        if not isinstance(step.prim, Raster):
            continue
        new_inputs = list(step.inputs)
        regions = []
        for r in step.prim.regions:
            read = step.inputs[r.src]
            src_step = producer.get(aliases.get(read, read))
            view = _single_view(src_step, slots) if src_step is not None else None
            composed = None
            if view is not None and src_step is not None:
                x = src_step.inputs[view[0].src]
                if x not in new_inputs:
                    new_inputs.append(x)
                composed = compose(r, view[0], view[1], new_inputs.index(x))
            if composed is None:
                regions.append(r)
            else:
                regions.append(composed)
                fused += 1
        used = sorted({r.src for r in regions})
        remap = {old: k for k, old in enumerate(used)}
        step.inputs = [new_inputs[i] for i in used]
        step.prim = Raster(tuple(
            Region(remap[r.src], r.src_offset, r.src_strides, r.dst_offset, r.dst_strides, r.size)
            for r in regions), step.prim.fill, step.prim.accumulate)
    return fused


def identity_aliases(steps: list[Step], slots: list[TensorSpec]) -> dict[int, int]:
    """Slots written by whole-buffer identity copies, mapped to the slot they copy."""
    from walle_core.geometry.regions import is_identity

    alias: dict[int, int] = {}
    for step in steps:
        prim = step.prim
        if (isinstance(prim, Raster) and prim.fill is None and not prim.accumulate
                and len(prim.regions) == 1 and len(step.inputs) == 1):
            src, dst = step.inputs[0], step.outputs[0]
            if slots[src].size == slots[dst].size and slots[src].dtype == slots[dst].dtype \
                    and is_identity(prim.regions[0], slots[dst].size):
                alias[dst] = alias.get(src, src)
    return alias


def consumers(steps: list[Step]) -> dict[int, int]:
    count: dict[int, int] = defaultdict(int)
    for step in steps:
        for s in step.inputs:
            if s >= 0:
                count[s] += 1
    return count
