"""Loop (gather) on the device: iterations with disjoint destinations, copied in parallel.

Covered: ``reduction == "none"`` with destinations ``dst_offset + i * dst_step`` (no
``dst_offsets`` input) that never write one element twice, so iteration order cannot matter;
sources at ``i * src_step`` or at per-iteration offsets read from an int32/int64 device buffer.
Scatters and reductions run on the host. Layout: work item ``g`` copies element ``g % size``
of iteration ``g / size``; an out-of-range source index sets ``flag`` instead of reading, and
the step raises the reference's error after reading the flag back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from walle_backend_opencl.device import DeviceBuffer, Runtime, launch
from walle_backend_opencl.raster import BITS, injective
from walle_core.ir.errors import ExecutionError
from walle_core.ir.primitives import Loop, TensorSpec

SOURCE = """
__kernel void gather(__global const uchar *src_b, const long src_o, const long src_n,
                     __global const uchar *idx_b, const long idx_o, __global uchar *dst_b,
                     const long dst_o, __global const long *geom, __global int *flag,
                     const long total) {
    const long g = get_global_id(0);
    if (g >= total) return;
    const long n1 = geom[8], n2 = geom[9], size = geom[7] * n1 * n2;
    const long it = g / size, e = g % size;
    const long a = e / (n1 * n2), b = (e / n2) % n1, c = e % n2;
    const long so = geom[0] + (HAS_IDX ? (long)((__global const IDX *)(idx_b + idx_o))[it]
                                       : it * geom[10]);
    const long s = so + a * geom[1] + b * geom[2] + c * geom[3];
    const long d = geom[4] + it * geom[11] + a * geom[5] + b * geom[6] + c * geom[12];
    if (s < 0 || s >= src_n) { flag[0] = 1; return; }
    ((__global T *)(dst_b + dst_o))[d] = ((__global const T *)(src_b + src_o))[s];
}
"""

Run = Callable[[list[Any], list[Any]], None]


def plan(rt: Runtime, prim: Loop, ins: list[TensorSpec | None], out: TensorSpec,
         local: int | None = None) -> Run | None:
    src = ins[1] if len(ins) > 1 else None
    idx = ins[2] if prim.has_src_offsets and len(ins) > 2 else None
    if prim.reduction != "none" or prim.has_dst_offsets or src is None or out.size == 0:
        return None
    if src.dtype != out.dtype or out.dtype.itemsize not in BITS or prim.count == 0:
        return None
    if prim.has_src_offsets and (idx is None or idx.dtype.name not in ("int32", "int64")
                                 or idx.size < prim.count):
        return None
    if prim.has_base and (ins[0] is None or ins[0].dtype != out.dtype):
        return None
    r = prim.region
    total = prim.count * r.count
    if total == 0:
        return None
    sizes, strides = (prim.count, *r.size), (prim.dst_step, *r.dst_strides)
    lo = r.dst_offset + sum(min(0, s * (n - 1)) for s, n in zip(strides, sizes, strict=True))
    hi = r.dst_offset + sum(max(0, s * (n - 1)) for s, n in zip(strides, sizes, strict=True))
    if lo < 0 or hi >= out.size or not injective(sizes, strides):
        return None  # the reference raises, or overlapping writes need its order
    geom = np.array([r.src_offset, *r.src_strides, r.dst_offset, r.dst_strides[0],
                     r.dst_strides[1], *r.size, prim.src_step, prim.dst_step,
                     r.dst_strides[2]], dtype=np.int64)
    idx_c = "long" if idx is None else rt.ctype(idx.dtype.np)
    header = (f"#define T {BITS[out.dtype.itemsize]}\n#define IDX {idx_c}\n"
              f"#define HAS_IDX {int(prim.has_src_offsets)}\n")
    kernel = rt.cl.Kernel(rt.program(header + SOURCE), "gather")
    cl, queue = rt.cl, rt.queue
    flags = cl.mem_flags
    geom_buf = cl.Buffer(rt.context, flags.READ_ONLY | flags.COPY_HOST_PTR, hostbuf=geom)
    flag_buf = cl.Buffer(rt.context, flags.READ_WRITE, 4)
    fill = np.array([prim.fill]).astype(out.dtype.np)
    fill = fill.view(np.uint8) if out.dtype.name == "bool" else fill
    zero, seen = np.zeros(1, np.int32), np.zeros(1, np.int32)

    def run(ins: list[Any], outs: list[Any]) -> None:
        y: DeviceBuffer = outs[0]
        base, source = ins[0], ins[1]
        if prim.has_base:
            cl.enqueue_copy(queue, y.arena, base.arena, byte_count=out.nbytes,
                            src_offset=base.offset, dst_offset=y.offset)
        else:
            cl.enqueue_fill_buffer(queue, y.arena, fill, y.offset, out.nbytes)
        offsets = ins[2] if prim.has_src_offsets else source
        cl.enqueue_copy(queue, flag_buf, zero)
        kernel(queue, *launch(total, local), source.arena, np.int64(source.offset),
               np.int64(src.size), offsets.arena, np.int64(offsets.offset), y.arena,
               np.int64(y.offset), geom_buf, flag_buf, np.int64(total))
        cl.enqueue_copy(queue, seen, flag_buf, is_blocking=True)
        if seen[0]:
            raise ExecutionError("index out of range in gather/scatter (source)")

    return run
