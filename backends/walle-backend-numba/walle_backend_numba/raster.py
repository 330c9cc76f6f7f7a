"""Raster: regions copied by one numba call per run of regions, with cheap fast paths.

Regions are simplified at compile time (size-1 dims dropped, mergeable dims merged), then:
a region contiguous on both sides is a flat slice copy (memcpy); a 2-D region that transposes
(unit stride on opposite sides) uses a 32x32 tiled kernel; everything else goes through one
strided kernel that walks a table of regions (so im2col's hundreds of regions cost one call).
Layout: flat, contiguous source and destination buffers of the same dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numba
import numpy as np

from walle_backend_numba.binding import flat_views
from walle_backend_numba.jit import PARALLEL_MIN, dual
from walle_core.ir.primitives import Raster, Region

TILE = 32

Dims = list[tuple[int, int, int]]  # (size, src stride, dst stride), outermost first


@numba.njit(cache=True, inline="always")
def _region(src: Any, so: int, s0: int, s1: int, s2: int, dst: Any, do: int, d0: int, d1: int,
            d2: int, i0: int, i1: int, n1: int, n2: int,
            accumulate: bool) -> None:  # pragma: no cover
    """Rows ``[i0, i1)`` of one region (``n1 x n2`` elements each), the case (contiguous,
    gather, strided, broadcast; copy or accumulate) chosen once, outside the loops.

    Each index is a base LLVM can see is >= 0 (``max(.., 0)``; region offsets never are
    negative) plus the loop counter times a stride known positive in that branch, so numba's
    negative-index select drops out and unit-stride runs vectorise. (Slices and ``dv[:] = sv``
    cost ~0.3 us of setup per run: a channel shuffle of 240 planes took 94 us against numpy's
    18.) Choosing the case per innermost run instead, inside the loops, kept LLVM from
    vectorising them: DIN's concats (50 runs of 18 floats) took 1.8 us a region, 0.5 now."""
    if n2 <= 0:
        return
    if s2 == 1 and d2 == 1:
        for i in range(i0, i1):
            for j in range(n1):
                sb = max(so + i * s0 + j * s1, 0)
                db = max(do + i * d0 + j * d1, 0)
                if accumulate:
                    for k in range(n2):
                        dst[db + k] += src[sb + k]
                else:
                    for k in range(n2):
                        dst[db + k] = src[sb + k]
    elif s2 > 0 and d2 == 1:  # gather into a contiguous run
        for i in range(i0, i1):
            for j in range(n1):
                sb = max(so + i * s0 + j * s1, 0)
                db = max(do + i * d0 + j * d1, 0)
                if accumulate:
                    for k in range(n2):
                        dst[db + k] += src[sb + k * s2]
                else:
                    for k in range(n2):
                        dst[db + k] = src[sb + k * s2]
    elif s2 > 0 and d2 > 0:
        for i in range(i0, i1):
            for j in range(n1):
                sb = max(so + i * s0 + j * s1, 0)
                db = max(do + i * d0 + j * d1, 0)
                if accumulate:
                    for k in range(n2):
                        dst[db + k * d2] += src[sb + k * s2]
                else:
                    for k in range(n2):
                        dst[db + k * d2] = src[sb + k * s2]
    elif s2 == 0 and d2 > 0:  # broadcast one source element
        for i in range(i0, i1):
            for j in range(n1):
                v = src[max(so + i * s0 + j * s1, 0)]
                db = max(do + i * d0 + j * d1, 0)
                if accumulate:
                    for k in range(n2):
                        dst[db + k * d2] += v
                else:
                    for k in range(n2):
                        dst[db + k * d2] = v
    else:  # negative strides: index as given
        for i in range(i0, i1):
            for j in range(n1):
                sb = so + i * s0 + j * s1
                db = do + i * d0 + j * d1
                if accumulate:
                    for k in range(n2):
                        dst[db + k * d2] += src[sb + k * s2]
                else:
                    for k in range(n2):
                        dst[db + k * d2] = src[sb + k * s2]


@dual()
def copy_table(src: Any, dst: Any, table: Any, accumulate: bool) -> None:  # pragma: no cover
    """Each table row: src_off, ss0, ss1, ss2, dst_off, ds0, ds1, ds2, n0, n1, n2, parallel."""
    for r in range(table.shape[0]):
        so, s0, s1, s2 = table[r, 0], table[r, 1], table[r, 2], table[r, 3]
        do, d0, d1, d2 = table[r, 4], table[r, 5], table[r, 6], table[r, 7]
        n0, n1, n2, par = table[r, 8], table[r, 9], table[r, 10], table[r, 11]
        if par:
            for i in numba.prange(n0):
                _region(src, so, s0, s1, s2, dst, do, d0, d1, d2, i, i + 1, n1, n2,
                        accumulate)
        else:
            _region(src, so, s0, s1, s2, dst, do, d0, d1, d2, 0, n0, n1, n2, accumulate)


@numba.njit(cache=True)
def copy_sources(srcs: Any, dst: Any, table: Any, accumulate: bool) -> None:  # pragma: no cover
    """:func:`copy_table` over several sources in one call: a row's column 12 picks its
    source from the tuple ``srcs`` (a concat's inputs: one dispatch instead of one per
    input)."""
    for r in range(table.shape[0]):
        src = srcs[table[r, 12]]
        _region(src, table[r, 0], table[r, 1], table[r, 2], table[r, 3], dst, table[r, 4],
                table[r, 5], table[r, 6], table[r, 7], 0, table[r, 8], table[r, 9],
                table[r, 10], accumulate)


#: More flat copies than this in one Raster go through the table kernel unless they are at
#: least FLAT_BIG elements (memcpy's speed then matters more than a call's overhead).
MANY_FLAT, FLAT_BIG = 4, 1 << 16

#: At most this many sources (one compilation per count) and elements go through
#: :func:`copy_sources`; bigger copies keep a call per source (memcpy, parallel tables).
MULTI_SOURCES, MULTI_ELEMENTS = 8, PARALLEL_MIN


@dual()
def transpose_2d(src: Any, so: int, ss0: int, dst: Any, do: int, dd1: int, rows: int,
                 cols: int) -> None:  # pragma: no cover
    """dst[do + i + j*dd1] = src[so + i*ss0 + j]: tiles keep both sides in cache."""
    for bi in numba.prange((rows + TILE - 1) // TILE):
        i0 = bi * TILE
        i1 = min(i0 + TILE, rows)
        for j0 in range(0, cols, TILE):
            j1 = min(j0 + TILE, cols)
            for j in range(j0, j1):
                for i in range(i0, i1):
                    dst[do + i + j * dd1] = src[so + i * ss0 + j]


def simplify(r: Region) -> Dims:
    """Drop size-1 dims, order the loops by destination stride (the smallest innermost), and
    merge a dim into its inner neighbour when both sides allow it.

    Loop order is free when no element is written twice; a fused Split + Transpose arrived with
    its unit-stride dim outermost and a 4-element run innermost (BERT's per-head split, 32K
    elements: 234 -> 15 us once reordered)."""
    dims = [(n, s, d) for n, s, d in zip(r.size, r.src_strides, r.dst_strides, strict=True)
            if n != 1]
    if injective(dims):
        dims.sort(key=lambda t: (abs(t[2]), abs(t[1])), reverse=True)
    merged: Dims = []
    for n, s, d in dims:
        if merged:
            pn, ps, pd = merged[-1]
            if ps == s * n and pd == d * n:
                merged[-1] = (pn * n, s, d)
                continue
        merged.append((n, s, d))
    return merged or [(1, 1, 1)]


def injective(dims: Dims) -> bool:
    """Whether no two iterations write the same destination element (safe to parallelise)."""
    span = 1
    for n, _, d in sorted(dims, key=lambda t: abs(t[2])):
        if n > 1 and abs(d) < span:
            return False
        span = abs(d) * n if n > 1 else span
    return True


def transpose_args(dims: Dims) -> tuple[int, int, int, int] | None:
    """(ss0, dd1, rows, cols) when ``dims`` is a 2-D transpose, else None."""
    if len(dims) != 2 or not injective(dims):
        return None
    for di, sj in ((dims[0], dims[1]), (dims[1], dims[0])):
        if di[2] == 1 and sj[1] == 1 and di[1] > 1 and sj[2] > 1:  # not a stride-0 broadcast
            return di[1], sj[2], di[0], sj[0]
    return None


def row(r: Region, dims: Dims) -> list[int]:
    padded = [(1, 0, 0)] * (3 - len(dims)) + dims
    par = int(injective(dims) and r.count >= PARALLEL_MIN and numba.get_num_threads() > 1)
    return [r.src_offset, *(s for _, s, _ in padded), r.dst_offset, *(d for _, _, d in padded),
            *(n for n, _, _ in padded), par]


def plan(prim: Raster) -> Callable[[list[np.ndarray], np.ndarray], None] | None:
    """Precompute the copy program for ``prim`` (regions are static); None if numpy must run it.

    A region that writes one element twice while accumulating keeps numpy's meaning (one
    buffered ``dst += src``: the last write wins), which a sequential kernel would not.
    """
    if prim.accumulate and not all(injective(simplify(r)) for r in prim.regions if r.count):
        return None
    ops: list[tuple[str, int, Any]] = []
    # many short flat copies (a broadcast row, BERT's 128 copies of one segment embedding)
    # cost a numpy slice assignment each (~0.35 us): they go through the table kernel instead
    flat_runs = sum(1 for r in prim.regions if r.count and len(simplify(r)) == 1 and
                    simplify(r)[0][1:] == (1, 1))
    few_flat = flat_runs <= MANY_FLAT or prim.accumulate
    for r in prim.regions:
        if r.count == 0:
            continue
        dims = simplify(r)
        if len(dims) == 1 and dims[0][1] == 1 and dims[0][2] == 1 and \
                (few_flat or r.count >= FLAT_BIG):
            ops.append(("flat", r.src, (r.src_offset, r.dst_offset, dims[0][0])))
            continue
        t2d = transpose_args(dims) if not prim.accumulate and r.count >= 4096 else None
        if t2d is not None:
            ops.append(("t2d", r.src, (r.src_offset, t2d[0], r.dst_offset, *t2d[1:])))
            continue
        if ops and ops[-1][0] == "table" and ops[-1][1] == r.src:
            ops[-1][2].append(row(r, dims))
        else:
            ops.append(("table", r.src, [row(r, dims)]))
    sources = sorted({src for _, src, _ in ops})
    if 1 < len(ops) and len(sources) <= MULTI_SOURCES and \
            all(kind != "t2d" for kind, _, _ in ops) and \
            sum(r.count for r in prim.regions) < MULTI_ELEMENTS:
        return _plan_multi(prim, ops, sources, _plan_program(prim, ops))
    return _plan_program(prim, ops)


def _plan_program(prim: Raster, ops: list[tuple[str, int, Any]]
                  ) -> Callable[[list[np.ndarray], np.ndarray], None]:
    """A call per copy: memcpy for flat ones, a table kernel per run of a source's regions,
    the tiled transpose."""
    program = []
    for kind, src, arg in ops:  # copies pick their kernel now, not per run
        if kind == "table":
            table = np.asarray(arg, dtype=np.int64)
            arg = (copy_table.parallel if table[:, 11].any() else copy_table.serial, table)
        elif kind == "t2d":
            arg = (transpose_2d.pick(arg[4] * arg[5]), *arg)
        program.append((kind, src, arg))
    fill, accumulate = prim.fill, prim.accumulate

    memo: list[Any] = [None, None]  # buffer ids -> flat views (a plan passes the same ones)

    def run(ins: list[np.ndarray], out: np.ndarray) -> None:
        key = (id(out), *map(id, ins))  # the memo holds the buffers: ids stay unique
        if memo[0] != key:
            memo[0], memo[1] = key, (out.reshape(-1), [a.reshape(-1) if a is not None else None
                                                       for a in ins], ins, out)
        flat, flats = memo[1][0], memo[1][1]
        if fill is not None:
            flat.fill(fill)
        for kind, src, arg in program:
            s = flats[src]
            if kind == "flat":
                so, do, n = arg
                if accumulate:
                    flat[do:do + n] += s[so:so + n]
                else:
                    flat[do:do + n] = s[so:so + n]
            elif kind == "t2d":
                kernel, so, ss0, do, dd1, rows, cols = arg
                kernel(s, so, ss0, flat, do, dd1, rows, cols)
            else:
                kernel, table = arg
                kernel(s, flat, table, accumulate)

    def bind(ins: list[np.ndarray], out: np.ndarray) -> Callable[[], None] | None:
        """One table or transpose call, no fill: the kernel with its arguments, bound."""
        if len(program) != 1 or fill is not None:
            return None
        kind, src, arg = program[0]
        views = flat_views([out, ins[src]])
        if views is None or kind == "flat":
            return None
        flat, s = views
        if kind == "t2d":
            kernel, so, ss0, do, dd1, rows, cols = arg
            return partial(kernel, s, so, ss0, flat, do, dd1, rows, cols)
        kernel, table = arg
        return partial(kernel, s, flat, table, accumulate)

    run.bind = bind  # type: ignore[attr-defined]
    return run


def _plan_multi(prim: Raster, ops: list[tuple[str, int, Any]], sources: list[int],
                fallback: Callable[[list[np.ndarray], np.ndarray], None]
                ) -> Callable[[list[np.ndarray], np.ndarray], None]:
    """A small Raster of several copies (a concat of small tensors) as one
    :func:`copy_sources` call: its copies' table rows, each tagged with its source's place in
    the tuple of sources. The tuple must be of one array type (numba indexes it at run time):
    buffers that are not all writable, or not all contiguous, go to ``fallback``."""
    rows = []
    for kind, src, arg in ops:
        tag = sources.index(src)
        if kind == "flat":
            so, do, n = arg
            rows.append([so, 0, 0, 1, do, 0, 0, 1, 1, 1, n, 0, tag])
        else:
            rows += [[*row[:11], 0, tag] for row in arg]
    table = np.asarray(rows, dtype=np.int64)
    fill, accumulate = prim.fill, prim.accumulate
    memo: list[Any] = [None, None]

    def run(ins: list[np.ndarray], out: np.ndarray) -> None:
        key = (id(out), *map(id, ins))  # the memo holds the buffers: ids stay unique
        if memo[0] != key:
            srcs = tuple(ins[k] for k in sources)
            uniform = all(a.flags.c_contiguous and a.flags.writeable for a in srcs) or \
                all(a.flags.c_contiguous and not a.flags.writeable for a in srcs)
            memo[0], memo[1] = key, (out.reshape(-1), tuple(a.reshape(-1) for a in srcs)
                                     if uniform else None, ins, out)
        flat, srcs = memo[1][0], memo[1][1]
        if srcs is None:
            fallback(ins, out)
            return
        if fill is not None:
            flat.fill(fill)
        copy_sources(srcs, flat, table, accumulate)

    def bind(ins: list[np.ndarray], out: np.ndarray) -> Callable[[], None] | None:
        srcs = [ins[k] for k in sources]
        uniform = all(a.flags.c_contiguous and a.flags.writeable for a in srcs) or \
            all(a.flags.c_contiguous and not a.flags.writeable for a in srcs)
        views = flat_views([out, *srcs])
        if fill is not None or not uniform or views is None:
            return None
        return partial(copy_sources, tuple(views[1:]), views[0], table, accumulate)

    run.bind = bind  # type: ignore[attr-defined]
    return run
