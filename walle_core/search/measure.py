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
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from walle_core.ir.primitives import Kernel, Step, TensorSpec
from walle_core.search.profile import _Bench, cache_dir, machine_load, remeasure_worthwhile

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
        return hashlib.sha256(backend.calibration_key().encode()).hexdigest()[:16]

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
        order = sorted(range(len(steps)), key=lambda i: -min(a.cost for _, a in candidates[i]))
        for i in order:
            opts = candidates[i]
            if len(opts) < 2:
                continue
            best = min(a.cost for _, a in opts)
            if best < self.min_seconds:
                break  # the rest are cheaper still
            step = steps[i]
            ins = [slots[s] if s >= 0 else None for s in step.inputs]
            outs = [slots[s] for s in step.outputs]
            if not all(s is None or s.dtype.name in FLOAT_KINDS for s in (*ins, *outs)):
                continue  # random data is not a valid input for index-like tensors
            if sum(s.nbytes for s in (*ins, *outs) if s is not None) > self.max_bytes:
                continue  # timing it would cost more memory and time than it can save
            close = [k for k, (_, a) in enumerate(opts) if a.cost <= best * self.ratio]
            if len(close) < 2:
                continue
            constant = [s >= 0 and s in consts for s in step.inputs]
            figures: dict[int, tuple[float, str]] = {}  # candidate -> (seconds, note)
            for k in close:
                backend, alg = opts[k]
                key = self.key(backend, alg, step, ins, outs, constant)
                self.touched.add(key)
                shard = shards.get(id(backend)) or shards.setdefault(id(backend),
                                                                     self.shard_of(backend))
                table = self._shard(shard)
                entry = table.get(key)
                if entry is None or remeasure_worthwhile(entry[1], entry[2]):
                    if time.perf_counter() - start > self.budget_s:
                        if entry is None:
                            continue
                        seconds = entry[0]
                    else:
                        load = machine_load()
                        timed = self._time(backend, alg, step, ins, outs, constant)
                        if timed is None:
                            continue  # a kernel that cannot run on random data
                        if entry is not None:  # the faster of the two is the machine's
                            timed, load = min(timed, entry[0]), min(load, entry[1])
                        table[key] = (timed, load, 1 + (entry[2] if entry else 0), today())
                        seconds = timed
                        self._dirty.add(shard)
                        self.measured += 1
                else:
                    seconds = entry[0]
                    self.reused += 1
                    if entry[3] != today():  # used today: kept another keep_days
                        table[key] = (*entry[:3], today())
                        self._dirty.add(shard)
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
