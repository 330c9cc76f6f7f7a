"""Per-machine cost profiles: what one step costs on one backend, from measured rates.

A :class:`CostProfile` holds rates measured once per (backend, device, settings) by
:func:`calibrate`: per-step launch overhead, elementwise / copy / reduce bandwidth, GEMM and
convolution FLOP rates at a small and a large size, and host<->device transfer bandwidth. The
micro-benchmarks run through the backend contract itself (``allocate`` / ``compile`` / ``sync``),
so every backend, plugin or built-in, is calibrated the same way without writing any code.
Profiles are cached as JSON under ``$WALLE_CACHE_DIR/calibration`` (default
``~/.cache/walle``); a warm cache makes calibration a file read.

:meth:`CostProfile.estimate` is the analytic model the search uses for steps a backend does not
cost itself: ``launch + max(flops / flop_rate, bytes / byte_rate)`` (a roofline with a fixed
per-call cost).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from walle_core.ir import dtypes
from walle_core.ir.primitives import (
    Elementwise,
    Kernel,
    Loop,
    MatMul,
    Primitive,
    Raster,
    Reduce,
    Region,
    Step,
    TensorSpec,
    expr_ops,
)
from walle_core.runtime import governor

if TYPE_CHECKING:
    from walle_core.backend import Algorithm, ExecutionBackend

PROFILE_VERSION = 2
F32 = dtypes.from_numpy(np.float32)
_SECONDS = ("launch_s", "transfer_latency_s")
_RATES = ("ew_bytes_s", "copy_bytes_s", "reduce_bytes_s", "gemm_small_flops_s", "gemm_flops_s",
          "conv_flops_s", "upload_bytes_s", "download_bytes_s")
#: Load per core above which a calibration is provisional: measured again (and merged, best of
#: each rate) by a later session that finds the machine quieter, at most MAX_SAMPLES times.
BUSY_LOAD = 0.75
MAX_SAMPLES = 4


def machine_load() -> float:
    """How busy the machine is, on the scale of the load average per core.

    From CPU pressure where the kernel reports it (PSI "some" avg10: the share of time some
    runnable task waited for a CPU), scaled so that the governor's PSI_BUSY (25%) reads as
    BUSY_LOAD (0.75). The load average counts this process's own busy threads (numba's pool
    workers spin between kernels), so a session that calibrated while another of its sessions
    ran marked its own figures provisional and had them timed again later (extra time and
    memory in the next sessions). Elsewhere, the 1-minute load average per core (0.0 where the
    OS does not say)."""
    psi = governor.psi_some_avg10()
    if psi is not None:
        return psi / governor.PSI_BUSY * BUSY_LOAD
    return governor.load_per_core() or 0.0


def remeasure_worthwhile(load_then: float, samples: int) -> bool:
    """A figure measured at ``load_then`` is worth measuring again now: it was taken on a busy
    machine, the machine is clearly quieter now, and it has not been re-measured too often."""
    now = machine_load()
    return load_then > BUSY_LOAD and now < load_then - 0.25 and samples < MAX_SAMPLES


@dataclass
class CostProfile:
    """Measured rates of one backend on one machine (seconds, bytes/s, FLOP/s)."""

    backend: str
    key: str
    launch_s: float = 5e-6
    ew_bytes_s: float = 4e9
    copy_bytes_s: float = 2e9
    reduce_bytes_s: float = 4e9
    gemm_small_flops_s: float = 5e9
    gemm_flops_s: float = 5e10
    conv_flops_s: float = 0.0  # 0: the backend has no native Conv (or it was not measured)
    upload_bytes_s: float = 8e9
    download_bytes_s: float = 8e9
    transfer_latency_s: float = 2e-5
    seconds: float = 0.0  # how long calibration took
    measured_at: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)  # backend-specific measurements
    load: float = 0.0  # the machine's load per core while measuring (see machine_load)
    samples: int = 1  # calibrations merged into this profile

    def merge(self, other: CostProfile) -> CostProfile:
        """The best of both calibrations, rate by rate: each is a best-of-runs already, and a
        slower figure measured what other processes took, not this machine's capability."""
        out = CostProfile(self.backend, self.key)
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if f.name in _SECONDS:
                setattr(out, f.name, min(a, b))
            elif f.name in _RATES:
                setattr(out, f.name, max(a, b))
        out.extra = {k: min(v, other.extra.get(k, v)) for k, v in self.extra.items()}
        out.extra.update({k: v for k, v in other.extra.items() if k not in self.extra})
        out.seconds = other.seconds
        out.measured_at = max(self.measured_at, other.measured_at)
        out.load = min(self.load, other.load)
        out.samples = self.samples + other.samples
        return out

    # -- the analytic model -------------------------------------------------------------------

    def gemm_rate(self, flops: float) -> float:
        """GEMM FLOP rate interpolated in log(size) between the small and large measurements."""
        small, large = 2.0 * 64**3, 2.0 * 256**3
        if flops <= small:
            return self.gemm_small_flops_s
        if flops >= large:
            return self.gemm_flops_s
        t = math.log(flops / small) / math.log(large / small)
        return self.gemm_small_flops_s ** (1 - t) * self.gemm_flops_s ** t

    def transfer(self, nbytes: int, to_device: bool) -> float:
        rate = self.upload_bytes_s if to_device else self.download_bytes_s
        return self.transfer_latency_s + nbytes / max(rate, 1.0)

    def estimate(self, step: Step, inputs: Sequence[TensorSpec | None],
                 outputs: Sequence[TensorSpec]) -> float:
        """Estimated seconds for one run of ``step`` (analytic, from the measured rates)."""
        return self.launch_s + work_seconds(self, step.prim, inputs, outputs)

    def to_json(self) -> dict[str, Any]:
        return {"version": PROFILE_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CostProfile | None:
        if data.get("version") != PROFILE_VERSION:
            return None
        data = {k: v for k, v in data.items() if k != "version"}
        try:
            return cls(**data)
        except TypeError:
            return None


def step_flops(prim: Primitive, inputs: Sequence[TensorSpec | None],
               outputs: Sequence[TensorSpec]) -> float:
    """Arithmetic work of one step (multiply-adds count 2)."""
    out = outputs[0] if outputs else None
    if out is None:
        return 0.0
    if isinstance(prim, MatMul) and inputs[0] is not None:
        a = inputs[0].shape
        k = a[-2] if prim.trans_a else a[-1]
        return 2.0 * out.size * k
    if isinstance(prim, Kernel) and prim.op_type in ("Conv", "ConvTranspose") \
            and len(inputs) > 1 and inputs[1] is not None:
        w = inputs[1].shape
        per_out = 1
        # OIHW weights, or HWIO for a channels-last Conv (runtime/layout.py)
        for d in (w[:3] if prim.attrs.get("layout") == "NHWC" else w[1:]):
            per_out *= d
        if prim.op_type == "ConvTranspose" and inputs[0] is not None:
            return 2.0 * inputs[0].size * w[1] * int(np.prod(w[2:]))
        return 2.0 * out.size * per_out
    if isinstance(prim, Elementwise):
        return float(out.size * max(1, expr_ops(prim.expr)))
    return 0.0



def step_bytes(prim: Primitive, inputs: Sequence[TensorSpec | None],
               outputs: Sequence[TensorSpec]) -> float:
    """Bytes a step reads and writes (rasters: only what their regions touch)."""
    if isinstance(prim, Raster):
        item = outputs[0].dtype.itemsize if outputs else 4
        moved = sum(r.count for r in prim.regions) * item * 2
        if prim.fill is not None:
            moved += outputs[0].nbytes
        return float(moved)
    if isinstance(prim, Loop):
        return float(prim.count * prim.region.count * 2 * (outputs[0].dtype.itemsize
                                                           if outputs else 4))
    total = sum(s.nbytes for s in inputs if s is not None) + sum(s.nbytes for s in outputs)
    return float(total)


def work_seconds(p: CostProfile, prim: Primitive, inputs: Sequence[TensorSpec | None],
                 outputs: Sequence[TensorSpec]) -> float:
    flops = step_flops(prim, inputs, outputs)
    nbytes = step_bytes(prim, inputs, outputs)
    if isinstance(prim, MatMul):
        # a GEMM streams its operands (the weights of a matrix-vector product once): at the
        # better of the measured streaming rates, not always the transposing copy's (a 512x1000
        # FC on numba's pool, 16 us, was estimated at 83 us from the copy rate)
        return max(flops / p.gemm_rate(flops), nbytes / max(p.copy_bytes_s, p.ew_bytes_s))
    if isinstance(prim, Elementwise):
        ops = max(1, expr_ops(prim.expr))
        return nbytes / p.ew_bytes_s * max(1.0, ops / 3)
    if isinstance(prim, Reduce):
        return nbytes / p.reduce_bytes_s
    if isinstance(prim, Raster | Loop):
        return nbytes / p.copy_bytes_s + len(getattr(prim, "regions", ())) * p.launch_s * 0.05
    if isinstance(prim, Kernel) and flops:
        rate = p.conv_flops_s or p.gemm_rate(flops) * 0.5
        return max(flops / rate, nbytes / p.copy_bytes_s)
    return nbytes / p.copy_bytes_s * 2  # other native kernels and Cast


# -- calibration --------------------------------------------------------------------------------


def cache_dir() -> Path:
    from walle_core.hostinfo import cache_root

    return cache_root() / "calibration"


def cache_path(key: str, backend: str) -> Path:
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / f"{backend}-{digest}.json"


def load_profile(backend: ExecutionBackend) -> CostProfile | None:
    key = backend.calibration_key()
    path = cache_path(key, backend.name)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    profile = CostProfile.from_json(data) if isinstance(data, dict) else None
    return profile if profile is not None and profile.key == key else None


_LOADED: dict[str, CostProfile] = {}  # cache file -> profile, for this process


def get_profile(backend: ExecutionBackend, *, refresh: bool = False,
                progress: Callable[[str], None] | None = None) -> CostProfile:
    """The backend's profile on this machine: from this process, else from the disk cache, else
    measured now and cached (read once per process, not once per planned shape)."""
    memo = str(cache_path(backend.calibration_key(), backend.name))
    if not refresh:
        if memo in _LOADED:
            return _LOADED[memo]
        cached = load_profile(backend)
        if cached is not None and not remeasure_worthwhile(cached.load, cached.samples):
            _LOADED[memo] = cached
            return cached
    else:
        cached = None
    child = _calibrate_in_child(backend, progress, refresh)
    if child is not None:
        _LOADED[memo] = child
        return child
    profile = calibrate(backend, progress=progress)
    if cached is not None:  # a provisional (busy-machine) profile: keep the best of both
        profile = cached.merge(profile)
    _LOADED[memo] = profile
    path = cache_path(profile.key, backend.name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(profile.to_json(), indent=1))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs re-measuring next time
    return profile


def in_process() -> bool:
    """Whether calibration and close-call timing run in this process
    (``WALLE_CALIBRATE_IN_PROCESS=1``: tests, where they are watched and replaced, and the
    child processes themselves) rather than in a child process."""
    return os.environ.get("WALLE_CALIBRATE_IN_PROCESS", "") in ("1", "true", "yes")


def importable_class(backend: ExecutionBackend) -> tuple[str, str] | None:
    """``(module, qualified name)`` of the backend's class, where a fresh interpreter can import
    it and build the same backend with ``cls(threads=...)``; None otherwise."""
    cls = type(backend)
    if "<locals>" in cls.__qualname__ or cls.__module__ in ("__main__", "builtins"):
        return None
    return cls.__module__, cls.__qualname__


_CHILD = """
import sys
from importlib import import_module
cls = import_module(sys.argv[1])
for part in sys.argv[2].split("."):
    cls = getattr(cls, part)
threads = int(sys.argv[3]) or None
from walle_core.search.profile import get_profile
get_profile(cls(threads=threads), refresh=sys.argv[4] == "1")
"""


def _calibrate_in_child(backend: ExecutionBackend, progress: Callable[[str], None] | None,
                        refresh: bool = False) -> CostProfile | None:
    """Calibrate ``backend`` in a child process and read the profile it saved; None where that
    cannot be done (a backend class a fresh interpreter cannot import, a child that failed,
    ``WALLE_CALIBRATE_IN_PROCESS=1``), and the caller calibrates here instead.

    Calibration loads and runs kernels no model may need (every Conv variant at two sizes,
    GEMMs, copies): 20-25 MB of the process's memory that stays. In the first session on a
    machine that was most of a small model's peak (DIN: 83 MB against 6 once calibrated). A
    child takes it, once per machine and backend version, for about half a second more."""
    where = importable_class(backend)
    if in_process() or where is None:
        return None
    if progress is not None:
        progress("calibrating in a child process")
    env = dict(os.environ, WALLE_CALIBRATE_IN_PROCESS="1")
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD, *where,
                               str(backend.threads or 0), "1" if refresh else "0"],
                              env=env, timeout=600,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return load_profile(backend)


class _Bench:
    """Runs one step on a backend through the contract and times it (best of repeats)."""

    def __init__(self, backend: ExecutionBackend) -> None:
        self.backend = backend

    def time(self, prim: Primitive, ins: Sequence[TensorSpec | None],
             outs: Sequence[TensorSpec], algorithm: Algorithm | None = None,
             budget_s: float = 0.04, max_runs: int = 50,
             constant: Sequence[bool] = ()) -> float:
        """Seconds of one run of ``prim`` on random data (the fastest of up to ``max_runs``).
        Inputs flagged in ``constant`` are passed as the backend's constants, as a plan passes
        weights: a kernel that caches what it derives from a constant (Winograd's transformed
        weights, packed panels) is timed as it will run, not re-checking a writable buffer."""
        b = self.backend
        total = sum(_aligned(s.nbytes) for s in ins if s is not None) + \
            sum(_aligned(s.nbytes) for s in outs)
        arena = b.allocate(total)
        offset = 0
        rng = np.random.default_rng(0)
        in_bufs: list[Any] = []
        for i, spec in enumerate(ins):
            if spec is None:
                in_bufs.append(None)
                continue
            if i < len(constant) and constant[i]:
                in_bufs.append(b.constant(_random(rng, spec)))
                continue
            buf = b.view(arena, offset, spec)
            b.upload(_random(rng, spec), buf)
            in_bufs.append(buf)
            offset += _aligned(spec.nbytes)
        out_bufs = []
        for spec in outs:
            out_bufs.append(b.view(arena, offset, spec))
            offset += _aligned(spec.nbytes)
        step = Step(prim, [i if s is not None else -1 for i, s in enumerate(ins)],
                    list(range(len(ins), len(ins) + len(outs))), "calibration")
        fn = b.compile(step, ins, outs, algorithm=algorithm)
        fn(in_bufs, out_bufs)  # warm-up (JIT, first launch)
        b.sync()
        times: list[float] = []
        with _threads_as_at_run_time(b):
            start = time.perf_counter()
            while len(times) < max_runs and (len(times) < 3 or
                                             time.perf_counter() - start < budget_s):
                t0 = time.perf_counter()
                fn(in_bufs, out_bufs)
                b.sync()
                times.append(time.perf_counter() - t0)
        # the fastest run is the machine's capability; slower ones measured other processes
        return float(min(times))

    def warm(self, prim: Primitive, ins: Sequence[TensorSpec | None],
             outs: Sequence[TensorSpec], algorithm: Algorithm | None = None,
             constant: Sequence[bool] = ()) -> None:
        """Compile ``prim`` and run it once on random data, inputs flagged in ``constant``
        passed as constants, as :meth:`time` does and as a plan does (the same argument types,
        so a JIT backend compiles and caches exactly what the plan will call)."""
        self.time(prim, ins, outs, algorithm, budget_s=0.0, max_runs=1, constant=constant)

    def transfer(self, nbytes: int) -> tuple[float, float]:
        b = self.backend
        spec = TensorSpec((nbytes // 4,), F32)
        arena = b.allocate(nbytes)
        buf = b.view(arena, 0, spec)
        host = np.ones(spec.shape, np.float32)
        up, down = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            b.upload(host, buf)
            b.sync()
            up.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            b.download(buf)
            down.append(time.perf_counter() - t0)
        return float(min(up)), float(min(down))


_RECENT = governor.RecentPressure()  # CPU pressure since the previous timing (this process)
_BUSY_SEEN = False  # some timing ran on a contended CPU since calibrate() started


def _threads_as_at_run_time(backend: ExecutionBackend) -> Any:
    """One thread (BLAS and the backend's own pool) while the CPU is contended, as the
    session's :class:`~walle_core.runtime.governor.ThreadGovernor` will run it then: a
    multi-threaded GEMM timed on a contended machine measures scheduler stalls (a 256^3 GEMM
    at 2 GFLOP/s instead of 250), and such a profile would misplace every GEMM-bound step until
    re-measured.
    """
    from contextlib import contextmanager, nullcontext

    global _BUSY_SEEN
    if not governor.contended(False, psi=_RECENT):
        return nullcontext()
    _BUSY_SEEN = True

    @contextmanager
    def one_thread() -> Any:
        limiter = governor.set_blas_threads(1)
        backend.limit_threads(1)
        try:
            yield
        finally:
            backend.limit_threads(backend.threads or governor.cores())
            if limiter is not None:
                limiter.restore_original_limits()

    return one_thread()


def _random(rng: np.random.Generator, spec: TensorSpec) -> np.ndarray:
    """Random data of the spec's dtype without a float64 temporary the size of the tensor."""
    dt = spec.dtype.np
    if dt in (np.float32, np.float64):
        return rng.random(spec.shape, dtype=dt) - dt.type(0.5)
    return (rng.random(spec.shape, dtype=np.float32) - np.float32(0.5)).astype(dt)


def _aligned(n: int) -> int:
    return (max(n, 1) + 63) // 64 * 64


def _spec(*shape: int) -> TensorSpec:
    return TensorSpec(tuple(shape), F32)


def calibrate(backend: ExecutionBackend,
              progress: Callable[[str], None] | None = None) -> CostProfile:
    """Measure ``backend``'s rates on this machine (about a second; cached by the caller)."""
    say = progress or (lambda _msg: None)
    global _BUSY_SEEN
    _BUSY_SEEN = False
    t_start = time.perf_counter()
    bench = _Bench(backend)
    p = CostProfile(backend=backend.name, key=backend.calibration_key(), load=machine_load())
    add = Elementwise(("add", ("in", 0), ("in", 1)))
    say("launch overhead")
    tiny = ([_spec(16), _spec(16)], [_spec(16)])
    launch_first = bench.time(add, *tiny)
    # raw times first, rates after the launch overhead is known for sure (below)
    raw: dict[str, tuple[float, float]] = {}  # rate -> (seconds, work: bytes or FLOPs)
    n = 1 << 20
    say("elementwise bandwidth")
    raw["ew_bytes_s"] = (bench.time(add, [_spec(n), _spec(n)], [_spec(n)]), 3 * 4 * n)
    say("copy bandwidth")
    side = 512
    transpose = Raster((Region(0, 0, (0, 1, side), 0, (0, side, 1), (1, side, side)),))
    raw["copy_bytes_s"] = (bench.time(transpose, [_spec(side, side)], [_spec(side, side)]),
                           2 * 4 * side * side)
    say("reduce bandwidth")
    raw["reduce_bytes_s"] = (bench.time(Reduce("sum", (1,)), [_spec(side, side)],
                                        [_spec(side, 1)]), 4 * side * side)
    say("GEMM rate")
    for size, attr in ((64, "gemm_small_flops_s"), (256, "gemm_flops_s")):
        raw[attr] = (bench.time(MatMul(), [_spec(size, size), _spec(size, size), None],
                                [_spec(size, size)]), 2 * size**3)
    if ("", "Conv") in backend.native_ops() and backend.supports(Kernel("Conv", "", {}, 13)):
        say("convolution rate")
        conv = Kernel("Conv", "", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, 13)
        c, hw = 32, 28
        raw["conv_flops_s"] = (bench.time(conv, [_spec(1, c, hw, hw), _spec(c, c, 3, 3), None],
                                          [_spec(1, c, hw, hw)]), 2 * c * c * 9 * hw * hw)
    say("backend-specific measurements")
    p.extra = {k: float(v) for k, v in backend.calibrate_extra(bench.time).items()}
    # The launch overhead again, now that every kernel has run: a figure taken while the
    # process was stalled (a pool's spinning workers sharing a core, a neighbour's burst)
    # once read 58 us instead of 0.65, every numba step then looked 90x dearer than numpy's
    # and whole models were placed on the reference backend until the cache key changed.
    launch_last = bench.time(add, *tiny)
    p.launch_s = min(launch_first, launch_last)
    for attr, (seconds, work) in raw.items():  # never more than half a step is launch
        setattr(p, attr, work / max(seconds - p.launch_s, 0.5 * seconds, 1e-12))
    # a launch time that moved several-fold between the first and the last figure, or a
    # whole step faster than it, means the machine changed speed while calibrating: keep
    # the profile, but as provisional (timed again by a later, quieter session)
    inconsistent = max(launch_first, launch_last) > 5 * p.launch_s + 2e-6 or any(
        seconds < p.launch_s for seconds, _ in raw.values())
    if backend.memory_domain != "host":
        say("transfer bandwidth")
        small_up, small_down = bench.transfer(64)
        big = 1 << 22
        big_up, big_down = bench.transfer(big)
        p.transfer_latency_s = (small_up + small_down) / 2
        p.upload_bytes_s = big / max(big_up - small_up, 1e-9)
        p.download_bytes_s = big / max(big_down - small_down, 1e-9)
    else:
        p.transfer_latency_s = 0.0
        p.upload_bytes_s = p.download_bytes_s = float("inf")
    p.seconds = time.perf_counter() - t_start
    p.measured_at = time.time()
    p.load = max(p.load, machine_load())
    if _BUSY_SEEN or inconsistent:  # provisional: re-measured by a later session
        p.load = max(p.load, BUSY_LOAD + 0.5)
    return p
