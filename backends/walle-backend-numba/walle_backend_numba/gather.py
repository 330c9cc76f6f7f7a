"""Loop (index-driven copy, the gather/scatter primitive) without reduction, in numba.

The numpy path builds index grids for every call (``np.ix_`` and fancy indexing): tens of
microseconds for an embedding lookup of a few rows. Here iterations run in order (later ones
win, as in the primitive's definition) over the 3-D region; any offset outside its buffer
stops the kernel and is reported as the reference's ``ExecutionError``. Reductions (add, mul,
max, min) keep the numpy path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numba
import numpy as np

from walle_core.ir.errors import ExecutionError
from walle_core.ir.primitives import Loop, TensorSpec

Run = Callable[[list[Any], list[Any]], None]


@numba.njit(cache=True)
def gather_copy(src: Any, out: Any, so_arr: Any, do_arr: Any, use_so: bool, use_do: bool,
                count: int, rso: int, rdo: int, src_step: int, dst_step: int, n0: int, n1: int,
                n2: int, s0: int, s1: int, s2: int, d0: int, d1: int,
                d2: int) -> int:  # pragma: no cover
    """Returns 0, or 1 / 2 when a source / output index is out of range."""
    ns, nd = src.shape[0], out.shape[0]
    for i in range(count):
        so = rso + (np.int64(so_arr[i]) if use_so else i * src_step)
        do = rdo + (np.int64(do_arr[i]) if use_do else i * dst_step)
        for a in range(n0):
            for b in range(n1):
                sb = so + a * s0 + b * s1
                db = do + a * d0 + b * d1
                for c in range(n2):
                    si = sb + c * s2
                    di = db + c * d2
                    if si < 0 or si >= ns:
                        return 1
                    if di < 0 or di >= nd:
                        return 2
                    out[di] = src[si]
    return 0


def plan(prim: Loop, ins: Sequence[TensorSpec | None], out: TensorSpec) -> Run | None:
    if prim.reduction != "none" or len(ins) < 2 or ins[1] is None:
        return None
    src = ins[1]
    if src.dtype != out.dtype or src.dtype.np.kind not in "biuf":
        return None
    for k, flag in ((2, prim.has_src_offsets), (3, prim.has_dst_offsets)):
        if flag and (len(ins) <= k or ins[k] is None or ins[k].dtype.np.kind not in "iu"):
            return None
    r = prim.region
    count, fill, has_base = prim.count, prim.fill, prim.has_base
    use_so, use_do = prim.has_src_offsets, prim.has_dst_offsets
    args = (count, r.src_offset, r.dst_offset, prim.src_step, prim.dst_step, *r.size,
            *r.src_strides, *r.dst_strides)
    dummy = np.zeros(1, np.int64)

    def run(i: list[Any], o: list[Any]) -> None:
        flat = o[0].reshape(-1)
        if has_base:
            np.copyto(o[0], i[0].reshape(o[0].shape))
        else:
            flat.fill(fill)
        so = i[2].reshape(-1) if use_so else dummy
        do = i[3].reshape(-1) if use_do else dummy
        status = gather_copy(i[1].reshape(-1), flat, so, do, use_so, use_do, *args)
        if status:
            what = "source" if status == 1 else "output"
            raise ExecutionError(f"index out of range in gather/scatter ({what})")

    return run
