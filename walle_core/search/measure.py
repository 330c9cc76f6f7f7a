"""Measured costs for close calls: the "measured where cheap" half of the search.

The analytic model ranks candidates well when they differ a lot and poorly when two backends'
kernels are within a small factor of each other (a numpy Conv against a numba one, two work-group
sizes). For steps that matter (estimated above ``min_seconds``) and whose best candidates are
within ``ratio`` of each other, each close candidate is compiled and timed once on random data
of the step's real shapes, through the backend contract. Results are cached per machine beside
the calibration profiles (``$WALLE_CACHE_DIR/calibration/measured.json``) under a key of the
backend's calibration key, the algorithm and the step's primitive and shapes, so a second
session (or process) with the same shapes measures nothing.

A time budget bounds the first session on a new machine; what is not measured keeps its
estimate and is measured by a later session. ``WALLE_SEARCH_MEASURE=0`` turns measuring off.

The timing itself runs in a child process (:meth:`Measurements._measure_in_child`, the child's
side is :func:`measure_jobs`), so the candidates' kernels and random operands never enter the
session's memory; ``WALLE_CALIBRATE_IN_PROCESS=1`` (tests) times in this process.

Each entry keeps the machine's load when it was timed (``[seconds, load, samples, day]``): a
time taken on a busy machine is timed again by a later session that finds it quieter, and the
faster of the two is kept (see ``profile.remeasure_worthwhile``), so one busy minute does not
decide placements for good.

Keys carry the backend's calibration key, which changes with its kernels' code, so every
upgrade (and every kernel edit on a developer's machine) starts new entries and strands the
old ones. So the table is one file per calibration key (``measured-<hash>.json`` beside
``measured.json``, which older versions wrote and which is removed): a session reads only the
files of the backends it searches. Each entry records the day it was last used (``day``, days
since the epoch); saving drops entries unused for ``keep_days`` (30) and, past ``max_entries``
(20,000), the least recently used, and deletes files untouched for ``keep_days``. One file for
everything had grown to 43,000 entries on a development machine: 9 MB of every session's
memory, most of it entries of code versions long gone.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from walle_core.ir.primitives import Kernel, Step, TensorSpec
from walle_core.search.profile import (
    _Bench,
    cache_dir,
    importable_class,
    in_process,
    machine_load,
    remeasure_worthwhile,
)

if TYPE_CHECKING:
    from walle_core.backend import Algorithm, ExecutionBackend

FLOAT_KINDS = {"float32", "float64", "float16"}


class Measurements:
    """A persistent table of measured step times, shared by all backends on this machine."""

    def __init__(self, path: Path | None = None, budget_s: float = 1.0, ratio: float = 4.0,
                 min_seconds: float = 20e-6, max_bytes: int = 32 << 20, keep_days: int = 30,
                 max_entries: int = 20_000) -> None:
        self.path = path or cache_dir() / "measured.json"
        self.keep_days = keep_days
        self.max_entries = max_entries
        self.budget_s = budget_s
        self.ratio = ratio
        self.min_seconds = min_seconds
        self.max_bytes = max_bytes
        # shard (hash of a calibration key, "" for the file at ``path``) -> key -> (seconds,
        # load per core while timing, times timed, day last used); read on first use
        self._tables: dict[str, dict[str, tuple[float, float, int, int]]] = {}
        self._dirty: set[str] = set()
        self.touched: set[str] = set()  # keys this instance measured or reused
        self.measured = 0  # measurements taken by this instance
        self.reused = 0
        self.lock = threading.Lock()

    @property
    def table(self) -> dict[str, tuple[float, float, int, int]]:
        """The entries stored at ``path`` itself (no backend's shard)."""
        return self._shard("")

    @property
    def dirty(self) -> bool:
        return bool(self._dirty)

    @dirty.setter
    def dirty(self, value: bool) -> None:
        """Mark every loaded table changed (True) or saved (False)."""
        self._dirty = set(self._tables) if value else set()

    def shard_path(self, shard: str) -> Path:
        if not shard:
            return self.path
        return self.path.with_name(f"{self.path.stem}-{shard}{self.path.suffix}")

    def _shard(self, shard: str) -> dict[str, tuple[float, float, int, int]]:
        if shard not in self._tables:
            self._tables[shard] = _read(self.shard_path(shard))
        return self._tables[shard]

    @staticmethod
    def shard_of(backend: ExecutionBackend) -> str:
        return Measurements.shard_of_key(backend.calibration_key())

    @staticmethod
    def shard_of_key(calibration_key: str) -> str:
        return hashlib.sha256(calibration_key.encode()).hexdigest()[:16]

    @staticmethod
    def enabled() -> bool:
        return os.environ.get("WALLE_SEARCH_MEASURE", "1") not in ("0", "false", "no")

    def key(self, backend: ExecutionBackend, alg: Algorithm, step: Step,
            ins: Sequence[TensorSpec | None], outs: Sequence[TensorSpec],
            constant: Sequence[bool] = ()) -> str:
        prim = step.prim
        what = repr(prim)
        if isinstance(prim, Kernel):  # attrs are excluded from a Kernel's repr
            what += repr(sorted(prim.attrs.items()))
        shapes = [(s.shape, s.dtype.name) if s is not None else None for s in (*ins, *outs)]
        raw = f"{backend.calibration_key()}|{alg.name}|{alg.params}|{what}|{shapes}"
        if any(constant):  # timed with those inputs as constants
            raw += "|const=" + "".join("1" if c else "0" for c in constant)
        return hashlib.sha256(raw.encode()).hexdigest()[:24]

    def refine(self, steps: Sequence[Step], slots: Sequence[TensorSpec],
               candidates: list[list[tuple[ExecutionBackend, Algorithm]]],
               consts: set[int] | dict[int, object] | None = None) -> None:
        """Replace estimates by measurements for close calls, in place (most expensive first).
        ``consts``: the slots that are constants (weights), timed as such."""
        with self.lock:
            self._refine(steps, slots, candidates, consts or ())

    def _refine(self, steps: Sequence[Step], slots: Sequence[TensorSpec],
                candidates: list[list[tuple[ExecutionBackend, Algorithm]]],
                consts: set[int] | dict[int, object] | tuple[()] = ()) -> None:
        start = time.perf_counter()
        shards: dict[int, str] = {}  # backend id -> its table's shard, hashed once a refine

        def shard_of(backend: ExecutionBackend) -> str:
            return shards.get(id(backend)) or shards.setdefault(id(backend),
                                                                self.shard_of(backend))

        calls = self._close_calls(steps, slots, candidates, consts)
        # what no earlier session measured (or measured on a busier machine): timed in a child
        # process where the backend can be rebuilt there, else here
        pending = []
        for i, close, keys in calls:
            for k, key in zip(close, keys, strict=True):
                entry = self._shard(shard_of(candidates[i][k][0])).get(key)
                if entry is None or remeasure_worthwhile(entry[1], entry[2]):
                    pending.append((i, k, key))
        in_child = self._measure_in_child(
            [(steps[i], slots, *candidates[i][k], key) for i, k, key in pending],
            consts) if pending and not in_process() else set()
        stale = {key for _, _, key in pending} - in_child
        for i, close, keys in calls:
            opts = candidates[i]
            step = steps[i]
            figures: dict[int, tuple[float, str]] = {}  # candidate -> (seconds, note)
            for k, key in zip(close, keys, strict=True):
                backend, alg = opts[k]
                self.touched.add(key)
                shard = shard_of(backend)
                entry = self._shard(shard).get(key)
                if key in stale and time.perf_counter() - start <= self.budget_s:
                    ins, outs, constant = _operands(step, slots, consts)
                    load = machine_load()
                    timed = self._time(backend, alg, step, ins, outs, constant)
                    if timed is None:
                        continue  # a kernel that cannot run on random data
                    seconds = self._store(shard, key, timed, load)
                    self.measured += 1
                elif entry is None:
                    continue  # not measured yet (budget spent, or a kernel that cannot run)
                else:
                    seconds = entry[0]
                    if key not in in_child:
                        self.reused += 1
                    self._touch(shard, key, entry)
                figures[k] = (seconds, f"measured {seconds * 1e6:.1f} us (estimate "
                              f"{alg.cost * 1e6:.1f} us)" + (f"; {alg.note}" if alg.note else ""))
            # like against like: a step whose close candidates are not all measured (the
            # budget ran out, or one cannot run on random data) keeps every estimate this
            # session. A measurement against an estimate is no comparison: ResNet-18's FC went
            # to numpy (measured 44 us) over the pool's GEMV (estimated 83, runs 16) and ran
            # 298 us in the model.
            if len(figures) == len(close):
                for k, (seconds, note) in figures.items():
                    backend, alg = opts[k]
                    opts[k] = (backend, replace(alg, cost=seconds, note=note))
        self.save()

    def _close_calls(self, steps: Sequence[Step], slots: Sequence[TensorSpec],
                     candidates: list[list[tuple[ExecutionBackend, Algorithm]]],
                     consts: set[int] | dict[int, object] | tuple[()]
                     ) -> list[tuple[int, list[int], list[str]]]:
        """The steps worth measuring, most expensive first: ``(step, its close candidates,
        their table keys)``."""
        calls = []
        order = sorted(range(len(steps)), key=lambda i: -min(a.cost for _, a in candidates[i]))
        for i in order:
            opts = candidates[i]
            if len(opts) < 2:
                continue
            best = min(a.cost for _, a in opts)
            if best < self.min_seconds:
                break  # the rest are cheaper still
            step = steps[i]
            ins, outs, constant = _operands(step, slots, consts)
            if not all(s is None or s.dtype.name in FLOAT_KINDS for s in (*ins, *outs)):
                continue  # random data is not a valid input for index-like tensors
            if sum(s.nbytes for s in (*ins, *outs) if s is not None) > self.max_bytes:
                continue  # timing it would cost more memory and time than it can save
            close = [k for k, (_, a) in enumerate(opts) if a.cost <= best * self.ratio]
            if len(close) >= 2:
                calls.append((i, close, [self.key(opts[k][0], opts[k][1], step, ins, outs,
                                                  constant) for k in close]))
        return calls

    def _touch(self, shard: str, key: str, entry: tuple[float, float, int, int]) -> None:
        """Mark an entry used today: it is kept another ``keep_days``."""
        if entry[3] != today():
            self._shard(shard)[key] = (*entry[:3], today())
            self._dirty.add(shard)

    def _child_job(self, backend: ExecutionBackend, alg: Algorithm, step: Step,
                   operands: tuple[list[TensorSpec | None], list[TensorSpec], list[bool]],
                   key: str, heads: dict[int, tuple[str, str, int, str] | None]
                   ) -> tuple[Any, ...] | None:
        """One job of :func:`measure_jobs`: what a child needs to rebuild ``backend`` and run
        ``step`` with ``alg``; None where a fresh interpreter cannot import the backend's
        class. ``heads`` holds each backend's part for the caller's batch of jobs."""
        if id(backend) not in heads:
            where = importable_class(backend)
            heads[id(backend)] = None if where is None else (
                *where, backend.threads or 0, backend.calibration_key())
        head = heads[id(backend)]
        return None if head is None else (*head, alg, step.prim, *operands, key)

    def _store(self, shard: str, key: str, timed: float, load: float) -> float:
        """Record a timing; against an earlier one of the same call, the faster of the two is
        the machine's. Returns the figure kept."""
        table = self._shard(shard)
        entry = table.get(key)
        if entry is not None:
            timed, load = min(timed, entry[0]), min(load, entry[1])
        table[key] = (timed, load, 1 + (entry[2] if entry else 0), today())
        self._dirty.add(shard)
        return timed

    def _measure_in_child(self, jobs: Sequence[tuple[Step, Sequence[TensorSpec],
                                                     ExecutionBackend, Algorithm, str]],
                          consts: set[int] | dict[int, object] | tuple[()]) -> set[str]:
        """Time ``jobs`` (most expensive first) in a child process, within ``budget_s``, and
        read back what it saved. Returns the keys handed to the child: measured there, or left
        unmeasured (its budget ran out, the kernel failed, the child died), never timed here.

        Timing here loads every close candidate's kernels and random operands into the
        session's process, and much of that stays: in the first sessions after a kernel change
        DenseNet-121 peaked at 218 MB against 98 once measured, MobileNetV2 at 104 against 24.
        A child takes that, and a kernel that crashes on random data takes the child down, not
        the session. A backend class a fresh interpreter cannot import is timed here."""
        payload = []
        handed: set[str] = set()
        heads: dict[int, tuple[str, str, int, str] | None] = {}
        for step, slots, backend, alg, key in jobs:
            job = self._child_job(backend, alg, step, _operands(step, slots, consts), key,
                                  heads)
            if job is not None:
                payload.append(job)
                handed.add(key)
        if not payload:
            return handed
        measured = self._run_child({"path": str(self.path), "mode": "measure",
                                    "budget_s": self.budget_s, "jobs": payload})
        self.measured += len(measured)
        for shard in {self.shard_of_key(job[3]) for job in payload}:  # what the child saved
            self._shard(shard).update(_read(self.shard_path(shard)))
        return handed

    def warm(self, steps: Sequence[Step], slots: Sequence[TensorSpec],
             backends: Sequence[ExecutionBackend], algorithms: Sequence[Algorithm],
             consts: set[int] | dict[int, object] | None = None) -> int:
        """Run a plan's steps that no earlier session ran (on a backend with ``jit_cache``)
        once in a child process, so their kernels are compiled there and this process only
        loads them from the backend's disk cache. Returns how many steps the child ran.

        In the first session after a kernel change (or an install), the steps that neither
        calibration nor the close calls had run compiled in the session's process: ResNet-18
        peaked at 181 MB against 83 once compiled (onnxruntime 164), DenseNet-121 at 204
        against 78 (onnxruntime 97). Each step's key is recorded once it ran, so later
        sessions of the same shapes start no child. ``WALLE_CALIBRATE_IN_PROCESS=1`` and a
        backend class a fresh interpreter cannot import compile here, as before."""
        if in_process():
            return 0
        with self.lock:
            consts = consts or set()
            jobs = []
            marks: list[tuple[str, str]] = []  # (shard, key) of the steps the child runs
            seen: set[str] = set()
            heads: dict[int, tuple[str, str, int, str] | None] = {}
            for step, backend, alg in zip(steps, backends, algorithms, strict=True):
                if not getattr(backend, "jit_cache", False):
                    continue
                operands = _operands(step, slots, consts)
                key = "warm:" + self.key(backend, alg, step, *operands)
                job = self._child_job(backend, alg, step, operands, key, heads)
                if job is None:
                    continue
                shard = self.shard_of_key(job[3])
                self.touched.add(key)
                entry = self._shard(shard).get(key)
                if entry is not None:
                    self._touch(shard, key, entry)
                elif key not in seen:
                    seen.add(key)
                    jobs.append(job)
                    marks.append((shard, key))
            ran = set(self._run_child({"path": str(self.path), "mode": "warm",
                                       "budget_s": 0.0, "jobs": jobs})) if jobs else set()
            for shard, key in marks:
                if key in ran:
                    self._shard(shard)[key] = (0.0, 0.0, 1, today())
                    self._dirty.add(shard)
            self.save()
            return len(ran)

    def _run_child(self, payload: dict[str, Any]) -> list[str]:
        """Run :func:`measure_jobs` on ``payload`` in a child process; the keys it reports
        (none where it failed)."""
        env = dict(os.environ, WALLE_CALIBRATE_IN_PROCESS="1")
        try:
            data = pickle.dumps(payload)
            done = subprocess.run([sys.executable, "-c", _CHILD], input=data, env=env,
                                  capture_output=True, timeout=600)
            if done.returncode != 0:
                return []
            keys = json.loads(done.stdout.decode().strip().splitlines()[-1])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError,
                pickle.PicklingError, TypeError, AttributeError):
            return []
        return [k for k in keys if isinstance(k, str)]

    def _time(self, backend: ExecutionBackend, alg: Algorithm, step: Step,
              ins: Sequence[TensorSpec | None], outs: Sequence[TensorSpec],
              constant: Sequence[bool] = ()) -> float | None:
        try:
            return _Bench(backend).time(step.prim, ins, outs, alg, budget_s=0.02, max_runs=10,
                                        constant=constant)
        except Exception:  # a kernel that cannot run on random data keeps its estimate
            return None

    def save(self) -> None:
        if not self._dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for shard in sorted(self._dirty):
                self._save(shard)
            self._dirty.clear()
            self._drop_stale()
        except OSError:
            pass

    def _save(self, shard: str) -> None:
        path = self.shard_path(shard)
        merged = _read(path)  # another process may have added entries meanwhile
        merged.update(self._tables[shard])
        oldest = today() - self.keep_days
        # most recently used first; on the same day, what this session used, then the later
        # written (the file's order is the order entries were first measured)
        ranked = [(-v[3], k not in self.touched, -i, k, v)
                  for i, (k, v) in enumerate(merged.items()) if v[3] >= oldest]
        ranked.sort(key=lambda r: r[:3])
        kept = [(k, v) for *_, k, v in ranked[:self.max_entries]]
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({k: list(v) for k, v in kept}))
        os.replace(tmp, path)

    def _drop_stale(self) -> None:
        """Delete other calibration keys' files untouched for keep_days, and the one-file
        table older versions wrote (its entries are keyed by code versions since replaced)."""
        if "" not in self._tables and self.path.exists():
            self.path.unlink()
        cutoff = time.time() - self.keep_days * 86400
        for other in self.path.parent.glob(f"{self.path.stem}-*{self.path.suffix}"):
            try:
                if other.stat().st_mtime < cutoff:
                    other.unlink()
            except OSError:
                pass


def _operands(step: Step, slots: Sequence[TensorSpec],
              consts: set[int] | dict[int, object] | tuple[()]
              ) -> tuple[list[TensorSpec | None], list[TensorSpec], list[bool]]:
    """A step's input and output specs, and which inputs are constants (weights)."""
    ins = [slots[s] if s >= 0 else None for s in step.inputs]
    outs = [slots[s] for s in step.outputs]
    return ins, outs, [s >= 0 and s in consts for s in step.inputs]


_CHILD = """
import json, pickle, sys
from walle_core.search.measure import measure_jobs
print(json.dumps(measure_jobs(pickle.load(sys.stdin.buffer))))
"""


def measure_jobs(payload: dict[str, Any]) -> list[str]:
    """The child process's side of :meth:`Measurements._measure_in_child`: time each job (most
    expensive first) until ``budget_s`` is spent, save the table, return the keys timed. With
    ``mode`` "warm" (:meth:`Measurements.warm`): run each job once, untimed and without a
    budget, and return the keys that ran."""
    from importlib import import_module

    table = Measurements(Path(payload["path"]), budget_s=payload["budget_s"])
    warm = payload.get("mode") == "warm"
    backends: dict[tuple[str, str, int], ExecutionBackend] = {}
    timed: list[str] = []
    start = time.perf_counter()
    for module, qualname, threads, calibration_key, alg, prim, ins, outs, constant, key in \
            payload["jobs"]:
        if not warm and time.perf_counter() - start > table.budget_s:
            break
        if (module, qualname, threads) not in backends:
            cls: Any = import_module(module)
            for part in qualname.split("."):
                cls = getattr(cls, part)
            backends[module, qualname, threads] = cls(threads=threads or None)
        backend = backends[module, qualname, threads]
        if backend.calibration_key() != calibration_key:
            continue  # not the backend the session searches (another version, device)
        if warm:  # compiled and run once: its kernels are in the backend's disk cache now
            try:
                _Bench(backend).warm(prim, ins, outs, alg, constant)
            except Exception:
                continue  # the session compiles it itself
            timed.append(key)
            continue
        shard = table.shard_of_key(calibration_key)
        entry = table._shard(shard).get(key)
        if entry is not None and not remeasure_worthwhile(entry[1], entry[2]):
            continue  # another process measured it meanwhile
        load = machine_load()
        seconds = table._time(backend, alg, Step(prim, [], [], ""), ins, outs, constant)
        if seconds is not None:
            table._store(shard, key, seconds, load)
            timed.append(key)
    table.save()
    return timed


def today() -> int:
    """Days since the epoch (an entry's last use)."""
    return int(time.time() // 86400)


def _read(path: Path) -> dict[str, tuple[float, float, int, int]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: e for k, v in data.items() if (e := _entry(v))}


def _entry(value: Any) -> tuple[float, float, int, int] | None:
    """A table entry from its JSON: ``[seconds, load, samples, day]``; older files have no
    day (taken as today: kept another ``keep_days``) or are a bare number (load unknown,
    taken as quiet)."""
    try:
        if isinstance(value, (int, float)):
            return float(value), 0.0, 1, today()
        if len(value) == 3:
            seconds, load, samples = value
            day = today()
        else:
            seconds, load, samples, day = value
        return float(seconds), float(load), int(samples), int(day)
    except (TypeError, ValueError):
        return None


_SHARED: dict[str, Measurements] = {}
_SHARED_LOCK = threading.Lock()


def shared() -> Measurements:
    """The process-wide table for the current cache folder (one file read per process)."""
    path = cache_dir() / "measured.json"
    with _SHARED_LOCK:
        if str(path) not in _SHARED:
            _SHARED[str(path)] = Measurements(path)
        return _SHARED[str(path)]
