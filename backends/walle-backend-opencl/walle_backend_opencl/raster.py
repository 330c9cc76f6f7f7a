"""Raster on the device: fill, contiguous copies through ``enqueue_copy``, one table kernel.

Regions whose source and destination are both dense row-major runs become plain buffer copies.
The rest, grouped by source input, run as one launch of ``raster_T`` walking a region table:
each row is ``[start, src_off, ss0, ss1, ss2, dst_off, ds0, ds1, ds2, n1, n2, 0]`` (longs, in
elements) and a work item binary-searches ``start`` (the running element count) for its region.
Parallel writes are only safe when regions never write the same element: with overlapping
destinations, or with ``accumulate``, each region gets its own launch, in order (the queue is
in-order), which keeps the reference's sequential meaning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from walle_backend_opencl.device import DeviceBuffer, Runtime, launch
from walle_core.ir.primitives import Raster, Region, TensorSpec, contiguous

BITS = {1: "uchar", 2: "ushort", 4: "uint", 8: "ulong"}

SOURCE = """
__kernel void raster(__global const uchar *src_b, const long src_o, __global uchar *dst_b,
                     const long dst_o, __global const long *table, const int regions,
                     const long total) {
    const long g = get_global_id(0);
    if (g >= total) return;
    int lo = 0, hi = regions - 1;
    while (lo < hi) {                      /* last region whose start <= g */
        const int mid = (lo + hi + 1) / 2;
        if (table[12 * mid] <= g) lo = mid; else hi = mid - 1;
    }
    __global const long *r = table + 12 * lo;
    const long e = g - r[0], n1 = r[9], n2 = r[10];
    const long i = e / (n1 * n2), j = (e / n2) % n1, k = e % n2;
    __global const T *src = (__global const T *)(src_b + src_o);
    __global T *dst = (__global T *)(dst_b + dst_o);
    const long d = r[5] + i * r[6] + j * r[7] + k * r[8];
    const T v = src[r[1] + i * r[2] + j * r[3] + k * r[4]];
    dst[d] = ACC;
}
"""

Run = Callable[[list[Any], list[Any]], None]


def injective(size: tuple[int, ...], strides: tuple[int, ...]) -> bool:
    """Sufficient test that ``size``/``strides`` address each element once: sorted by stride,
    every stride steps past everything the smaller dims can reach."""
    reach = 0
    for n, s in sorted(((n, abs(s)) for n, s in zip(size, strides, strict=True) if n > 1),
                       key=lambda d: d[1]):
        if s <= reach:
            return False
        reach += s * (n - 1)
    return True


def span(r: Region) -> tuple[int, int]:
    lo = r.dst_offset + sum(min(0, s * (n - 1)) for s, n in zip(r.dst_strides, r.size,
                                                                strict=True))
    hi = r.dst_offset + sum(max(0, s * (n - 1)) for s, n in zip(r.dst_strides, r.size,
                                                                strict=True))
    return lo, hi


def dst_indices(r: Region) -> np.ndarray:
    i, j, k = np.ix_(*(np.arange(n, dtype=np.int64) for n in r.size))
    s = r.dst_strides
    return (r.dst_offset + i * s[0] + j * s[1] + k * s[2]).reshape(-1)


def self_overlapping(r: Region) -> bool:
    if injective(r.size, r.dst_strides):
        return False
    return r.count > 1 << 20 or np.unique(dst_indices(r)).size != r.count


def overlapping(regions: list[Region]) -> bool:
    """Whether two regions may write one element (exact when small, else by their spans)."""
    spans = sorted(span(r) for r in regions)
    if all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False)):
        return False
    total = sum(r.count for r in regions)
    if total > 1 << 20:
        return True  # too big to check exactly: take the ordered path
    idx = np.concatenate([dst_indices(r) for r in regions])
    return bool(np.unique(idx).size != idx.size)


def uses_kernel(prim: Raster) -> bool:
    """Whether some region needs the table kernel (the rest are fills and buffer copies)."""
    return any(r.count and (prim.accumulate or not (contiguous(r.size, r.src_strides) and
                                                    contiguous(r.size, r.dst_strides)))
               for r in prim.regions)


def plan(rt: Runtime, prim: Raster, out: TensorSpec, local: int | None = None) -> Run | None:
    dtype = out.dtype.np
    item = dtype.itemsize
    if item not in BITS or (prim.accumulate and rt.ctype(dtype) is None):
        return None
    regions = [r for r in prim.regions if r.count]
    if any(self_overlapping(r) for r in regions):
        return None  # a region writing one element twice: numpy's order decides, use numpy
    ctype = rt.ctype(dtype) if prim.accumulate else BITS[item]
    acc = "dst[d] + v" if prim.accumulate else "v"
    if prim.accumulate and dtype == np.bool_:
        acc = "(uchar)((dst[d] + v) != 0)"
    ordered = prim.accumulate or overlapping(regions)
    batches: list[tuple[str, int, Any]] = []  # ("copy", region) or ("table", src, table)
    pending: dict[int, list[Region]] = {}
    for r in regions:
        if not prim.accumulate and contiguous(r.size, r.src_strides) and \
                contiguous(r.size, r.dst_strides):
            batches.append(("copy", r.src, r))
        elif ordered:
            batches.append(("table", r.src, [r]))
        else:
            pending.setdefault(r.src, []).append(r)
    for src, group in pending.items():
        batches.append(("table", src, group))
    tables = [(kind, src, table_of(rt, payload) if kind == "table" else payload)
              for kind, src, payload in batches]
    kernel = None
    if any(kind == "table" for kind, _, _ in batches):
        source = f"#define T {ctype}\n#define ACC {acc}\n" + SOURCE
        kernel = rt.cl.Kernel(rt.program(source), "raster")
    fill = None if prim.fill is None else np.array([prim.fill]).astype(dtype)
    if fill is not None and dtype == np.bool_:
        fill = fill.view(np.uint8)
    cl, queue = rt.cl, rt.queue

    def run(ins: list[Any], outs: list[Any]) -> None:
        dst: DeviceBuffer = outs[0]
        if fill is not None and out.nbytes:
            cl.enqueue_fill_buffer(queue, dst.arena, fill, dst.offset, out.nbytes)
        for kind, src_index, payload in tables:
            src: DeviceBuffer = ins[src_index]
            if kind == "copy":
                r = payload
                cl.enqueue_copy(queue, dst.arena, src.arena, byte_count=r.count * item,
                                src_offset=src.offset + r.src_offset * item,
                                dst_offset=dst.offset + r.dst_offset * item)
            else:
                table, count, total = payload
                assert kernel is not None
                kernel(queue, *launch(total, local), src.arena,
                               np.int64(src.offset), dst.arena, np.int64(dst.offset), table,
                               np.int32(count), np.int64(total))

    return run


def table_of(rt: Runtime, regions: list[Region]) -> tuple[Any, int, int]:
    rows, start = [], 0
    for r in regions:
        rows.append([start, r.src_offset, *r.src_strides, r.dst_offset, *r.dst_strides,
                     r.size[1], r.size[2], 0])
        start += r.count
    host = np.array(rows, dtype=np.int64)
    flags = rt.cl.mem_flags
    buf = rt.cl.Buffer(rt.context, flags.READ_ONLY | flags.COPY_HOST_PTR, hostbuf=host)
    return buf, len(regions), start
