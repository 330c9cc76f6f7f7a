"""Work-group size and tile tuning, measured on the device and cached per device (as MNN does).

For each step the search costs, :func:`algorithms` offers the variants of its kernel family:

* 1-D kernels (Elementwise/Cast, Raster region tables, Reduce, Loop gathers): the local work
  size (``local``: the driver's choice, or 64/256 items, within the device's limit);
* MatMul and the native Conv (an implicit GEMM on the same tiles): the output tile edge and rows
  per work item (``tile``/``wpt``), within the work-group and local-memory limits.

A step whose analytic estimate is below ``WALLE_OPENCL_TUNE_MIN_US`` (default 50 us) gets only
the default variant at that estimate: its time is launch overhead, which no local size changes.
Others are measured once: every variant is built, run on a scratch buffer of ones (a warm-up,
then the median of up to three runs within a small budget; a variant already twice as slow as
the best stops after one run), and the median seconds are the variant's cost, so the search
picks the fastest measured. MatMul/Conv variants are timed on a cut grid of about 2^26
multiply-adds (whole work-groups, at least 8 per compute unit) and scaled by the
full/launched work-groups, so tuning a big GEMM or convolution costs a fraction of one run.
Results are kept in memory and in
``~/.cache/walle/opencl/tuning-<device key>.json`` (keyed by kernel family, a digest of the
primitive and the tensor specs, and a readable shape summary), merged with what other processes
wrote, so a second process, or a second session, measures nothing. ``WALLE_OPENCL_TUNE=0``
turns measuring off (the default variant, costed analytically, everywhere).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from walle_backend_opencl import matmul, raster
from walle_backend_opencl.device import Runtime, cache_dir
from walle_core.backend import Algorithm
from walle_core.ir.errors import WalleError
from walle_core.ir.primitives import (
    Cast,
    Elementwise,
    Kernel,
    Loop,
    MatMul,
    Primitive,
    Raster,
    Reduce,
    Step,
    TensorSpec,
)

LOCAL_SIZES = (None, 64, 256)
TILES = ((32, 8), (64, 8), (16, 2), (16, 4))
BUDGET_S = 0.03  # timed runs of one variant stop after this much (at least one run)
SAMPLE_MACS = 1 << 26  # MatMul/Conv variants are timed on about this many multiply-adds


class Declined(WalleError):
    """This step has no device kernel for its shapes or dtypes: the search places it on
    another backend (the core inserts and charges the transfers)."""


def family(prim: Primitive) -> str | None:
    """The tunable kernel family of ``prim`` (None: nothing to tune)."""
    if isinstance(prim, Elementwise | Cast):
        return "elementwise"
    if isinstance(prim, Raster):
        return "raster" if raster.uses_kernel(prim) else None
    if isinstance(prim, Reduce):
        return "reduce"
    if isinstance(prim, Loop):
        return "loop"
    if isinstance(prim, MatMul):
        return "matmul"
    if isinstance(prim, Kernel) and prim.op_type == "Conv":
        return "conv"
    return None


def variants(rt: Runtime, fam: str | None, itemsize: int) -> list[tuple[str, dict[str, Any]]]:
    """(name, compile params) of each variant; the first is the default."""
    if fam in ("matmul", "conv"):
        return [(f"tile{t}x{w}", {"tile": t, "wpt": w}) for t, w in TILES
                if matmul.tile_fits(rt, t, w, itemsize)]
    if fam is None:
        return [("default", {})]
    limit = rt.device.max_work_group_size
    return [("local=auto" if n is None else f"local={n}", {"local": n})
            for n in LOCAL_SIZES if n is None or n <= limit]


def shape_key(fam: str, prim: Primitive, ins: Sequence[TensorSpec | None],
              outs: Sequence[TensorSpec]) -> str:
    """``family|digest|shapes``: the digest covers the whole primitive and every spec."""
    specs = [None if s is None else (s.shape, s.dtype.name) for s in (*ins, *outs)]
    digest = hashlib.sha256(repr((prim, specs)).encode()).hexdigest()[:16]
    shapes = ";".join("-" if s is None else "x".join(map(str, s.shape)) or "()"
                      for s in (*ins, *outs))
    return f"{fam}|{digest}|{shapes}"


class Tuner:
    """Measured variant times for one device: memory, then the JSON file on disk."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.path = cache_dir() / f"tuning-{rt.device_key}.json"
        self.entries: dict[str, dict[str, float]] = self._read()
        self.measured = 0  # variants measured by this process (0 on a warm cache)
        self.lock = threading.Lock()

    def _read(self) -> dict[str, dict[str, float]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        entries = data.get("entries") if isinstance(data, dict) else None
        return entries if isinstance(entries, dict) else {}

    def save(self) -> None:
        """Merge with what other processes wrote since, then replace the file atomically."""
        try:
            merged = self._read()
            merged.update(self.entries)
            self.entries = merged
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"device": self.rt.device_ident, "entries": merged},
                                      indent=0, sort_keys=True))
            tmp.replace(self.path)
        except OSError:
            pass  # a read-only cache only costs measuring again next time

    def times(self, step: Step, ins: Sequence[TensorSpec | None], outs: Sequence[TensorSpec],
              fam: str, options: list[tuple[str, dict[str, Any]]]) -> dict[str, float]:
        """Seconds per variant name (measured now for the ones not in the cache)."""
        key = shape_key(fam, step.prim, ins, outs)
        with self.lock:
            known = dict(self.entries.get(key, {}))
            missing = [(name, p) for name, p in options if name not in known]
            if missing:
                known.update(measure(self.rt, step, ins, outs, missing, min(known.values(),
                                                                             default=None)))
                self.measured += len(missing)
                self.entries[key] = known
                self.save()
        return known


def measure(rt: Runtime, step: Step, ins: Sequence[TensorSpec | None],
            outs: Sequence[TensorSpec], options: list[tuple[str, dict[str, Any]]],
            best: float | None = None) -> dict[str, float]:
    """Median seconds of each variant on scratch buffers of ones (inf: it did not build)."""
    from walle_backend_opencl.device import DeviceBuffer
    from walle_backend_opencl.execution import plan_step

    cl = rt.cl
    sizes = [0 if s is None else (s.nbytes + 127) // 128 * 128 for s in (*ins, *outs)]
    arena = cl.Buffer(rt.context, cl.mem_flags.READ_WRITE, max(sum(sizes), 8))
    bufs: list[Any] = []
    offset = 0
    for spec, size in zip((*ins, *outs), sizes, strict=True):
        if spec is None:
            bufs.append(None)
            continue
        buf = DeviceBuffer(arena, offset, spec)
        index = isinstance(step.prim, Loop) and len(bufs) == 2 and step.prim.has_src_offsets
        one = np.array([0 if index else 1]).astype(spec.dtype.np)  # indices 0: in range
        if spec.nbytes:
            cl.enqueue_fill_buffer(rt.queue, arena, one.view(np.uint8) if one.dtype == np.bool_
                                   else one, offset, spec.nbytes)
        bufs.append(buf)
        offset += size
    in_bufs, out_bufs = bufs[:len(ins)], bufs[len(ins):]
    result: dict[str, float] = {}
    sample = {"sample": SAMPLE_MACS} if isinstance(step.prim, MatMul | Kernel) else {}
    for name, params in options:
        try:
            run = plan_step(rt, step.prim, ins, outs, {**params, **sample})
        except cl.Error:
            run = None
        if run is None:
            result[name] = float("inf")
            continue
        run(in_bufs, out_bufs)  # warm-up: first launch, driver caches
        rt.queue.finish()
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < 3 and (not times or time.perf_counter() - start < BUDGET_S):
            t0 = time.perf_counter()
            run(in_bufs, out_bufs)
            rt.queue.finish()
            times.append(time.perf_counter() - t0)
            if best is not None and times[0] * getattr(run, "scale", 1.0) > 2 * best:
                break
        result[name] = float(np.median(times)) * getattr(run, "scale", 1.0)
        best = result[name] if best is None else min(best, result[name])
    return result


def min_tuned_seconds() -> float:
    return float(os.environ.get("WALLE_OPENCL_TUNE_MIN_US", "50")) * 1e-6


def tuning_enabled() -> bool:
    return os.environ.get("WALLE_OPENCL_TUNE", "1") != "0"


def algorithms(rt: Runtime, tuner: Tuner, step: Step, ins: Sequence[TensorSpec | None],
               outs: Sequence[TensorSpec], estimate: float) -> list[Algorithm]:
    """The step's variants, costed by measurement (or the analytic ``estimate`` when the step
    is too small to tune); raises :class:`Declined` when no kernel covers it."""
    from walle_backend_opencl.execution import plan_step

    prim = step.prim
    try:
        default = plan_step(rt, prim, ins, outs)
    except rt.cl.Error as error:
        raise Declined(f"opencl: the driver rejects the {prim.kind} kernel: {error}") from None
    if default is None:
        raise Declined(f"opencl: no kernel for this {prim.kind} (dtypes/shapes)")
    fam = family(prim)
    itemsize = outs[0].dtype.itemsize if outs else 4
    options = variants(rt, fam, itemsize)
    if fam is None or len(options) < 2 or not tuning_enabled() or \
            estimate < min_tuned_seconds():
        name, params = options[0]
        why = "analytic estimate" + ("" if fam is None else " (too small to tune)")
        return [Algorithm(name, estimate, tuple(sorted(params.items())), why)]
    measured = tuner.times(step, ins, outs, fam, options)
    found = [Algorithm(name, measured[name], tuple(sorted(params.items())),
                       f"measured {measured[name] * 1e6:.1f} us on the device")
             for name, params in options if np.isfinite(measured.get(name, np.inf))]
    if not found:
        raise Declined(f"opencl: no {fam} variant builds on this device")
    return found
