"""Reduce on the device: one work item per output element, looping over the reduced set.

Layout: the input is row-major; ``geom`` (longs) holds the kept dims then the reduced dims as
``[nk, sizes..., strides..., nr, sizes..., strides...]`` so any axis set works with one kernel
per (op, dtypes). Float inputs only (float32, float64 with cl_khr_fp64); accumulation is in
double when the device has it, else float. argmax/argmin return int64, first occurrence (or
last with ``select_last``), NaN winning as in numpy. Empty reduced sets run on the host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from walle_backend_opencl.device import DeviceBuffer, Runtime, launch
from walle_core.ir.primitives import Reduce, TensorSpec

SOURCE = """
__kernel void reduce(__global const uchar *x_b, const long x_o, __global uchar *y_b,
                     const long y_o, __global const long *geom, const long outputs) {
    const long o = get_global_id(0);
    if (o >= outputs) return;
    __global const T *x = (__global const T *)(x_b + x_o);
    const int nk = (int)geom[0];
    long base = 0, rest = o;
    for (int a = nk - 1; a >= 0; --a) {
        base += (rest % geom[1 + a]) * geom[1 + nk + a];
        rest /= geom[1 + a];
    }
    __global const long *red = geom + 1 + 2 * nk;
    const int nr = (int)red[0];
    long count = 1;
    for (int a = 0; a < nr; ++a) count *= red[1 + a];
    ACC_T acc = INIT, m = 0;
    long best = 0;
    PRE
    for (long e0 = 0; e0 < count; ++e0) {
        const long e = LAST ? count - 1 - e0 : e0;
        long off = base, r = e;
        for (int a = nr - 1; a >= 0; --a) {
            off += (r % red[1 + a]) * red[1 + nr + a];
            r /= red[1 + a];
        }
        const ACC_T v = (ACC_T)x[off];
        STEP
    }
    ((__global OUT_T *)(y_b + y_o))[o] = (OUT_T)(FINISH);
}
"""

LSE_PRE = """for (long e = 0; e < count; ++e) {
        long off = base, r = e;
        for (int a = nr - 1; a >= 0; --a) {
            off += (r % red[1 + a]) * red[1 + nr + a];
            r /= red[1 + a];
        }
        const ACC_T v = (ACC_T)x[off];
        if (e == 0 || isnan(v) || v > m) m = isnan(m) ? m : v;
    }
    if (isinf(m) || isnan(m)) m = 0;"""

OPS: dict[str, tuple[str, str, str]] = {  # init, step, finish
    "sum": ("0", "acc += v;", "acc"),
    "mean": ("0", "acc += v;", "acc / count"),
    "prod": ("1", "acc *= v;", "acc"),
    "sum_square": ("0", "acc += v * v;", "acc"),
    "l1": ("0", "acc += fabs(v);", "acc"),
    "l2": ("0", "acc += v * v;", "sqrt(acc)"),
    "log_sum": ("0", "acc += v;", "log(acc)"),
    "log_sum_exp": ("0", "acc += exp(v - m);", "log(acc) + m"),
    "max": ("-INFINITY", "if (isnan(v) || v > acc) acc = isnan(acc) ? acc : v;", "acc"),
    "min": ("INFINITY", "if (isnan(v) || v < acc) acc = isnan(acc) ? acc : v;", "acc"),
    "argmax": ("0", "if (e0 == 0 || (!isnan(acc) && (isnan(v) || v > acc))) "
                    "{ acc = v; best = e; }", "best"),
    "argmin": ("0", "if (e0 == 0 || (!isnan(acc) && (isnan(v) || v < acc))) "
                    "{ acc = v; best = e; }", "best"),
}

Run = Callable[[list[Any], list[Any]], None]


def plan(rt: Runtime, prim: Reduce, x: TensorSpec, out: TensorSpec,
         local: int | None = None) -> Run | None:
    xt, ot = x.dtype.np, out.dtype.np
    if xt.kind != "f" or rt.ctype(xt) is None or rt.ctype(ot) is None or prim.op not in OPS:
        return None
    axes = sorted(a % max(len(x.shape), 1) for a in prim.axes) if x.shape else []
    if any(x.shape[a] == 0 for a in axes) or out.size == 0:
        return None
    strides = [int(np.prod(x.shape[i + 1:], dtype=np.int64)) for i in range(len(x.shape))]
    kept = [i for i in range(len(x.shape)) if i not in axes]
    geom = [len(kept), *(x.shape[i] for i in kept), *(strides[i] for i in kept),
            len(axes), *(x.shape[i] for i in axes), *(strides[i] for i in axes)]
    init, step, finish = OPS[prim.op]
    acc_t = "double" if rt.fp64 else "float"
    if ot == np.bool_:
        finish = f"({finish}) != 0"
    defines = {"T": rt.ctype(xt), "OUT_T": rt.ctype(ot), "ACC_T": acc_t, "INIT": init,
               "STEP": step, "FINISH": finish, "LAST": "1" if prim.select_last else "0",
               "PRE": LSE_PRE if prim.op == "log_sum_exp" else ""}
    src = SOURCE
    for name, value in defines.items():
        src = src.replace(name, str(value)) if name in ("STEP", "PRE", "FINISH", "INIT") else src
    header = "".join(f"#define {k} {v}\n" for k, v in defines.items()
                     if k not in ("STEP", "PRE", "FINISH", "INIT"))
    kernel = rt.cl.Kernel(rt.program(header + src), "reduce")
    flags = rt.cl.mem_flags
    geom_buf = rt.cl.Buffer(rt.context, flags.READ_ONLY | flags.COPY_HOST_PTR,
                            hostbuf=np.array(geom, dtype=np.int64))
    n = out.size

    def run(ins: list[Any], outs: list[Any]) -> None:
        xb: DeviceBuffer = ins[0]
        yb: DeviceBuffer = outs[0]
        kernel(rt.queue, *launch(n, local), xb.arena, np.int64(xb.offset),
                       yb.arena, np.int64(yb.offset), geom_buf, np.int64(n))

    return run
