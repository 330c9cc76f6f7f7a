"""Native 1-D/2-D Conv as one step: an implicit GEMM on the tiled MatMul layout.

Per image ``b`` and group ``g`` (``get_global_id(2) = b * group + g``) the output is the GEMM
``Y[m, p] = sum_k W[m, k] * X_col[k, p] + bias[m]`` with ``m`` the group's output channels,
``p = oy * OW + ox`` the output pixels and ``k = (c * KH + ky) * KW + kx``. The im2col matrix
is never stored: the B tile load computes ``X[b, g * Cg + c, oy * SH - PT + ky * DH,
ox * SW - PL + kx * DW]`` (zero outside the image). This saves the decomposed path's im2col
raster (which writes and reads ``K x OH * OW`` elements) and one launch. Tiles and rows per work
item are the MatMul kernel's (tuned the same way). Kernel geometry (KH, KW, strides,
dilations) is compiled in, so index arithmetic divides by constants; image sizes are arguments.
Float32 (float64 with cl_khr_fp64); 3-D convolutions and other dtypes are declined.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from walle_backend_opencl.device import DeviceBuffer, Runtime
from walle_backend_opencl.matmul import ACTS, sampled, tile_fits
from walle_core.ir.primitives import Kernel, TensorSpec

SOURCE = """
__kernel __attribute__((reqd_work_group_size(TILE, TILE / WPT, 1)))
void conv(__global const uchar *x_b, const long x_o, __global const uchar *w_b,
          const long w_o, __global const uchar *c_b, const long c_o, __global uchar *y_b,
          const long y_o, const int C, const int H, const int W, const int OW,
          const int M, const int N, const int K, const int GROUPS, const int PT, const int PL,
          const T lo, const T hi) {
    const int RTS = TILE / WPT;
    const int KHW = KH * KW;
    __local T at[TILE][TILE + 1];
    __local T bt[TILE][TILE + 1];
    const int lr = get_local_id(1), lc = get_local_id(0);
    const int row0 = get_group_id(1) * TILE, col = get_group_id(0) * TILE + lc;
    const int z = get_global_id(2), img = z / GROUPS, g = z % GROUPS;
    const int cg = C / GROUPS;
    __global const T *w = (__global const T *)(w_b + w_o) + (long)g * M * K;
    __global const T *x = (__global const T *)(x_b + x_o) + ((long)img * C + g * cg) * H * W;
    const int oy = col / OW, ox = col % OW;
    const int iy0 = oy * SH - PT, ix0 = ox * SW - PL;
    T acc[WPT];
    for (int q = 0; q < WPT; ++q) acc[q] = 0;
    for (int k0 = 0; k0 < K; k0 += TILE) {
        for (int q = 0; q < WPT; ++q) {
            const int r = lr + q * RTS, row = row0 + r, ka = k0 + lc, kb = k0 + r;
            at[r][lc] = (row < M && ka < K) ? w[(long)row * K + ka] : 0;
            T v = 0;
            if (col < N && kb < K) {
                const int c = kb / KHW, rem = kb % KHW;
                const int iy = iy0 + (rem / KW) * DH, ix = ix0 + (rem % KW) * DW;
                if (iy >= 0 && iy < H && ix >= 0 && ix < W) v = x[((long)c * H + iy) * W + ix];
            }
            bt[r][lc] = v;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int k = 0; k < TILE; ++k) {
            const T bk = bt[k][lc];
            for (int q = 0; q < WPT; ++q) acc[q] += at[lr + q * RTS][k] * bk;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (col >= N) return;
    for (int q = 0; q < WPT; ++q) {
        const int row = row0 + lr + q * RTS;
        if (row >= M) break;
        T y = acc[q];
        if (BIAS) y += ((__global const T *)(c_b + c_o))[g * M + row];
        ACT
        ((__global T *)(y_b + y_o))[((long)img * GROUPS * M + g * M + row) * N + col] = y;
    }
}
"""

Run = Callable[[list[Any], list[Any]], None]


def geometry(prim: Kernel, x: TensorSpec, w: TensorSpec) -> dict[str, int] | None:
    """The 2-D geometry of a 1-D or 2-D Conv (1-D as height 1), or None when not covered."""
    from walle_core.reference_ops.conv import resolve_pads

    nd = len(x.shape) - 2
    if nd not in (1, 2) or len(w.shape) != nd + 2:
        return None
    attrs = prim.attrs
    k = list(attrs.get("kernel_shape") or w.shape[2:])
    s = list(attrs.get("strides") or [1] * nd)
    d = list(attrs.get("dilations") or [1] * nd)
    if list(w.shape[2:]) != k:
        return None
    pads = resolve_pads(list(x.shape[2:]), k, s, d, attrs)
    if nd == 1:
        k, s, d, pads = [1, *k], [1, *s], [1, *d], [0, pads[0], 0, pads[1]]
        h, wd = 1, x.shape[2]
    else:
        h, wd = x.shape[2], x.shape[3]
    oh = (h + pads[0] + pads[2] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    ow = (wd + pads[1] + pads[3] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    group = int(attrs.get("group", 1))
    if group < 1 or x.shape[1] % group or w.shape[0] % group or \
            w.shape[1] * group != x.shape[1] or oh <= 0 or ow <= 0:
        return None
    return {"N": x.shape[0], "C": x.shape[1], "H": h, "W": wd, "M": w.shape[0], "OH": oh,
            "OW": ow, "KH": k[0], "KW": k[1], "SH": s[0], "SW": s[1], "DH": d[0], "DW": d[1],
            "PT": pads[0], "PL": pads[1], "G": group}


def plan(rt: Runtime, prim: Kernel, ins: list[TensorSpec | None], out: TensorSpec,
         tile: int, wpt: int, sample: int = 0) -> Run | None:
    x, w = ins[0], ins[1] if len(ins) > 1 else None
    bias = ins[2] if len(ins) > 2 else None
    if x is None or w is None or len(ins) > 3 or out.size == 0:
        return None
    dt = out.dtype.np
    if dt.kind != "f" or rt.ctype(dt) is None or any(
            s.dtype.np != dt for s in (x, w, bias) if s is not None):
        return None
    activation = prim.attrs.get("fused_activation", "")
    if activation not in ACTS or not tile_fits(rt, tile, wpt, dt.itemsize):
        return None
    geo = geometry(prim, x, w)
    if geo is None or out.size != geo["N"] * geo["M"] * geo["OH"] * geo["OW"]:
        return None
    if bias is not None and bias.size != geo["M"]:
        return None
    group = geo["G"]
    m, n = geo["M"] // group, geo["OH"] * geo["OW"]
    k = (geo["C"] // group) * geo["KH"] * geo["KW"]
    defines = {"T": rt.ctype(dt), "TILE": tile, "WPT": wpt, "KH": geo["KH"], "KW": geo["KW"],
               "SH": geo["SH"], "SW": geo["SW"], "DH": geo["DH"], "DW": geo["DW"],
               "BIAS": int(bias is not None), "ACT": ACTS[activation]}
    header = "".join(f"#define {key} {value}\n" for key, value in defines.items())
    kernel = rt.cl.Kernel(rt.program(header + SOURCE), "conv")
    params = prim.attrs.get("fused_act_params", (0.0, 0.0)) if activation == "clip" else (0.0, 0.0)
    ints = [np.int32(v) for v in (geo["C"], geo["H"], geo["W"], geo["OW"], m, n, k, group,
                                  geo["PT"], geo["PL"])]
    scal = [dt.type(v) for v in params]
    local = (tile, tile // wpt, 1)
    grid, scale = sampled(((n + tile - 1) // tile * tile, (m + tile - 1) // tile * (tile // wpt),
                           geo["N"] * group), local, sample // max(k, 1),
                          rt.device.max_compute_units)

    def run(i: list[Any], o: list[Any]) -> None:
        xb: DeviceBuffer = i[0]
        wb: DeviceBuffer = i[1]
        cb: DeviceBuffer | None = i[2] if len(i) > 2 else None
        y: DeviceBuffer = o[0]
        c = cb if cb is not None else wb
        kernel(rt.queue, grid, local, xb.arena, np.int64(xb.offset), wb.arena,
               np.int64(wb.offset), c.arena, np.int64(c.offset), y.arena, np.int64(y.offset),
               *ints, *scal)

    run.scale = scale  # type: ignore[attr-defined]  # full / launched work (sampled timing)
    return run
