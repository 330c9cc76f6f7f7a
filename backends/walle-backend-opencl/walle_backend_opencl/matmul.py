"""Tiled MatMul with local memory and a fused epilogue (alpha, beta * bias, activation).

Kernel layout: a work-group of TILE x TILE/WPT items computes one TILE x TILE output tile
of batch ``get_global_id(2)`` (each item WPT rows, strided by TILE/WPT, reusing each B value
from a register: 3.5x faster than one output per item on PoCL). A and B tiles are staged
through local memory, reading A as ``[M, K]`` or ``[K, M]`` (``TA``) and B as ``[K, N]`` or
``[N, K]`` (``TB``). A batch stride of 0 broadcasts that side.
The bias is read through its broadcast strides ``(sb, sm, sn)`` over (batch, row, col),
found on the host. Float32 (and float64 with cl_khr_fp64) only; other dtypes run on the host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from walle_backend_opencl.device import DeviceBuffer, Runtime
from walle_core.ir.primitives import MatMul, TensorSpec

TILE = 32  # output tile edge (default; tuning offers others, see tuning.py)
WPT = 8  # rows per work item: a work-group is TILE x (TILE / WPT) items
SOURCE = """
__kernel __attribute__((reqd_work_group_size(TILE, TILE / WPT, 1)))
void matmul(__global const uchar *a_b, const long a_o, __global const uchar *b_b,
            const long b_o, __global const uchar *c_b, const long c_o, __global uchar *y_b,
            const long y_o, const int M, const int N, const int K, const long sa,
            const long sbt, const long sb, const long sm, const long sn, const T alpha,
            const T beta, const T lo, const T hi) {
    const int RTS = TILE / WPT;
    __local T at[TILE][TILE + 1];
    __local T bt[TILE][TILE + 1];
    const int lr = get_local_id(1), lc = get_local_id(0);
    const int row0 = get_group_id(1) * TILE, col = get_group_id(0) * TILE + lc;
    const long batch = get_global_id(2);
    __global const T *a = (__global const T *)(a_b + a_o) + batch * sa;
    __global const T *b = (__global const T *)(b_b + b_o) + batch * sbt;
    T acc[WPT];
    for (int w = 0; w < WPT; ++w) acc[w] = 0;
    for (int k0 = 0; k0 < K; k0 += TILE) {
        for (int w = 0; w < WPT; ++w) {
            const int r = lr + w * RTS, row = row0 + r, ka = k0 + lc, kb = k0 + r;
            at[r][lc] = (row < M && ka < K) ?
                (TA ? a[(long)ka * M + row] : a[(long)row * K + ka]) : 0;
            bt[r][lc] = (col < N && kb < K) ?
                (TB ? b[(long)col * K + kb] : b[(long)kb * N + col]) : 0;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int k = 0; k < TILE; ++k) {
            const T bk = bt[k][lc];
            for (int w = 0; w < WPT; ++w) acc[w] += at[lr + w * RTS][k] * bk;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (col >= N) return;
    for (int w = 0; w < WPT; ++w) {
        const int row = row0 + lr + w * RTS;
        if (row >= M) break;
        T y = acc[w] * alpha;
        if (BIAS) y += ((__global const T *)(c_b + c_o))[batch * sb + row * sm + col * sn] * beta;
        ACT
        ((__global T *)(y_b + y_o))[(batch * M + row) * N + col] = y;
    }
}
"""
ACTS = {"": "", "relu": "y = (isnan(y) || y > 0) ? y : 0;",
        "clip": "y = y < lo ? lo : (y > hi ? hi : y);", "sigmoid": "y = 1 / (1 + exp(-y));",
        "tanh": "y = tanh(y);"}

Run = Callable[[list[Any], list[Any]], None]


def bias_strides(bias: TensorSpec, out: TensorSpec, batch: int, m: int,
                 n: int) -> tuple[int, int, int] | None:
    """(sb, sm, sn) with bias[flat] at b*sb + i*sm + j*sn for output (b, i, j), if affine."""
    try:
        index = np.broadcast_to(np.arange(bias.size, dtype=np.int64).reshape(bias.shape),
                                out.shape).reshape(batch, m, n)
    except ValueError:
        return None
    sb = int(index[1, 0, 0] - index[0, 0, 0]) if batch > 1 else 0
    sm = int(index[0, 1, 0] - index[0, 0, 0]) if m > 1 else 0
    sn = int(index[0, 0, 1] - index[0, 0, 0]) if n > 1 else 0
    b, i, j = np.ix_(np.arange(batch), np.arange(m), np.arange(n))
    return (sb, sm, sn) if np.array_equal(index, b * sb + i * sm + j * sn + index[0, 0, 0]) \
        and index[0, 0, 0] == 0 else None


def tile_fits(rt: Runtime, tile: int, wpt: int, itemsize: int) -> bool:
    """Whether a ``tile`` x ``tile`` output tile with ``wpt`` rows per item fits the device's
    work-group and local-memory limits."""
    if tile % wpt or tile < wpt:
        return False
    return tile * (tile // wpt) <= rt.device.max_work_group_size and \
        2 * tile * (tile + 1) * itemsize <= rt.device.local_mem_size


def sampled(grid: tuple[int, int, int], local: tuple[int, int, int], sample: int,
            units: int) -> tuple[tuple[int, int, int], float]:
    """A smaller grid for timing (tuning): about ``sample`` outputs (``local[0]**2`` per
    work-group), at least 8 work-groups per compute unit, cut along batch, then rows, then
    columns; with the full/launched work-group ratio that scales the time back."""
    if not sample:
        return grid, 1.0
    counts = [g // size for g, size in zip(grid, local, strict=True)]
    full = counts[0] * counts[1] * counts[2]
    cap = max(sample // (local[0] * local[0]), 8 * units, 1)
    for axis in (2, 1, 0):
        rest = counts[0] * counts[1] * counts[2] // counts[axis]
        if rest * counts[axis] > cap:
            counts[axis] = max(1, cap // rest)
    launched = counts[0] * counts[1] * counts[2]
    new = (counts[0] * local[0], counts[1] * local[1], counts[2] * local[2])
    return new, full / launched


def plan(rt: Runtime, prim: MatMul, a: TensorSpec, b: TensorSpec, bias: TensorSpec | None,
         out: TensorSpec, tile: int = TILE, wpt: int = WPT, sample: int = 0) -> Run | None:
    dt = out.dtype.np
    if not tile_fits(rt, tile, wpt, dt.itemsize):
        return None
    if dt.kind != "f" or rt.ctype(dt) is None or any(
            s.dtype.np != dt for s in (a, b, bias) if s is not None):
        return None
    if len(a.shape) < 2 or len(b.shape) < 2 or prim.activation not in ACTS or out.size == 0:
        return None
    m, k = (a.shape[-1], a.shape[-2]) if prim.trans_a else a.shape[-2:]
    k2, n = (b.shape[-1], b.shape[-2]) if prim.trans_b else b.shape[-2:]
    ba, bb = int(np.prod(a.shape[:-2])), int(np.prod(b.shape[:-2]))
    batch = max(ba, bb)
    if k != k2 or (ba != bb and min(ba, bb) != 1) or out.size != batch * m * n:
        return None
    if (len(a.shape) > 2 and len(b.shape) > 2 and a.shape[:-2] != b.shape[:-2]):
        return None
    strides = (0, 0, 0)
    if bias is not None:
        found = bias_strides(bias, out, batch, m, n)
        if found is None:
            return None
        strides = found
    ctype = rt.ctype(dt)
    header = (f"#define T {ctype}\n#define TILE {tile}\n#define WPT {wpt}\n"
              f"#define TA {int(prim.trans_a)}\n"
              f"#define TB {int(prim.trans_b)}\n#define BIAS {int(bias is not None)}\n"
              f"#define ACT {ACTS[prim.activation]}\n")
    kernel = rt.cl.Kernel(rt.program(header + SOURCE), "matmul")
    sa = m * k if ba > 1 else 0
    sbt = k * n if bb > 1 else 0
    params = prim.act_params if prim.activation == "clip" else (0.0, 0.0)
    scal = [dt.type(v) for v in (prim.alpha, prim.beta, *params)]
    group = (tile, tile // wpt, 1)
    grid, scale = sampled(((n + tile - 1) // tile * tile, (m + tile - 1) // tile * (tile // wpt),
                           batch), group, sample // max(k, 1), rt.device.max_compute_units)

    def run(ins: list[Any], outs: list[Any]) -> None:
        xa: DeviceBuffer = ins[0]
        xb: DeviceBuffer = ins[1]
        xc: DeviceBuffer | None = ins[2] if len(ins) > 2 else None
        y: DeviceBuffer = outs[0]
        c = xc if xc is not None else xa
        kernel(rt.queue, grid, group, xa.arena, np.int64(xa.offset),
                       xb.arena, np.int64(xb.offset), c.arena, np.int64(c.offset), y.arena,
                       np.int64(y.offset), np.int32(m), np.int32(n), np.int32(k),
                       np.int64(sa), np.int64(sbt), *(np.int64(s) for s in strides), *scal)

    run.scale = scale  # type: ignore[attr-defined]  # full / launched work (sampled timing)
    return run
