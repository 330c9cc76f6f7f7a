"""The stream runtime: source → validation → trigger trie and operators → stored features.

One :class:`StreamRuntime` owns a trigger engine, the tasks' handlers and pipelines, and a
:class:`StreamStore`. Every ``checkpoint_every`` records it commits, in one transaction, the source
offset, the engine snapshot, operator state, counters and the features produced since the last
checkpoint; :meth:`StreamRuntime.resume` restores all of it, so a killed run continues exactly
where its last checkpoint left it (see :mod:`walle_core.stream.store`).

Latency is measured per feature from the moment the runtime took the completing event to the
moment its record was written into SQLite's open transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from walle_core.stream.events import Rejects, check_event, encoded_size, parse_event
from walle_core.stream.pattern import Trigger
from walle_core.stream.source import RawEvent, Source
from walle_core.stream.store import StreamStore
from walle_core.stream.task import StreamTask
from walle_core.stream.triggers import Match, TriggerEngine


@dataclass
class RunStats:
    """What a run did; ``to_dict`` is the summary the CLI prints."""

    events_in: int = 0
    rejected: Rejects = field(default_factory=Rejects)
    triggers_fired: int = 0
    features_out: int = 0
    raw_bytes: int = 0
    feature_bytes: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    elapsed_s: float = 0.0
    resumed_from: int = 0
    handler_errors: int = 0

    def percentile_ms(self, q: float) -> float | None:
        if not self.latencies_ns:
            return None
        ordered = sorted(self.latencies_ns)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6

    def to_dict(self) -> dict[str, Any]:
        processed = self.events_in - self.resumed_from
        return {
            "events_in": self.events_in, "rejected": self.rejected.total,
            "rejected_by_reason": self.rejected.to_dict(), "triggers_fired": self.triggers_fired,
            "features_out": self.features_out, "handler_errors": self.handler_errors,
            "latency_p50_ms": self.percentile_ms(0.50), "latency_p99_ms": self.percentile_ms(0.99),
            "events_per_s": processed / self.elapsed_s if self.elapsed_s else None,
            "raw_bytes": self.raw_bytes, "feature_bytes": self.feature_bytes,
            "upload_saving": (1 - self.feature_bytes / self.raw_bytes) if self.raw_bytes else None,
            "resumed_from": self.resumed_from, "elapsed_s": self.elapsed_s,
        }

    def counters(self) -> dict[str, Any]:
        return {"events_in": self.events_in, "rejected": self.rejected.to_dict(),
                "triggers_fired": self.triggers_fired, "features_out": self.features_out,
                "raw_bytes": self.raw_bytes, "feature_bytes": self.feature_bytes,
                "handler_errors": self.handler_errors}

    def load_counters(self, data: dict[str, Any]) -> None:
        self.events_in = data["events_in"]
        self.rejected.load(data["rejected"])
        for name in ("triggers_fired", "features_out", "raw_bytes", "feature_bytes",
                     "handler_errors"):
            setattr(self, name, data[name])


class StreamRuntime:
    """Runs a set of stream tasks over events, storing their features with checkpoints."""

    def __init__(self, tasks: Iterable[StreamTask], store: StreamStore | None = None,
                 checkpoint_every: int = 20_000, measure_bytes: bool = True) -> None:
        self.store = store if store is not None else StreamStore()
        self.checkpoint_every = checkpoint_every
        self.measure_bytes = measure_bytes
        self.stats = RunStats()
        self.tasks: dict[str, StreamTask] = {}
        self.engine = TriggerEngine({})
        self.fingerprint = ""
        self.last_handler_error = ""
        self.replace_tasks(tasks)

    # -- the task set ------------------------------------------------------------------------------

    def replace_tasks(self, tasks: Iterable[StreamTask]) -> None:
        """Add, remove or update tasks at run time; live cursors of kept patterns survive."""
        self.tasks = {task.name: task for task in tasks}
        triggers: dict[str, Trigger] = {n: t.trigger for n, t in self.tasks.items()
                                        if t.trigger is not None}
        self.engine.replace(triggers)
        self._pipelines = [(f"{t.name}.{p.name}", p.bind(self.store))
                           for t in self.tasks.values() for p in t.pipelines]

    # -- checkpoints -------------------------------------------------------------------------------

    def resume(self, fingerprint: str) -> int:
        """Restore the last checkpoint of a run with this fingerprint; return its source offset.

        A different fingerprint (another source or task set) starts fresh on the same store."""
        self.fingerprint = fingerprint
        if self.store.get_meta("fingerprint") != fingerprint:
            self.store.reset()
            self.store.set_meta("fingerprint", fingerprint)
            self.store.commit()
            return 0
        snap = self.store.get_meta("engine")
        if snap is not None:
            self.engine.restore(snap)
        counters = self.store.get_meta("counters")
        if counters is not None:
            self.stats.load_counters(counters)
        self.stats.resumed_from = self.stats.events_in
        return self.stats.events_in

    def finished(self) -> bool:
        return bool(self.store.get_meta("finished"))

    def checkpoint(self) -> None:
        """Commit offset, engine state, operator state, counters and new features atomically."""
        for _, pipe in self._pipelines:
            pipe.checkpoint()
        self.store.set_meta("engine", self.engine.snapshot())
        self.store.set_meta("counters", self.stats.counters())
        self.store.commit()

    # -- processing --------------------------------------------------------------------------------

    def process(self, raw: RawEvent) -> None:
        """Take one raw event: validate, trigger, compute, store. Never raises for bad input."""
        started = time.perf_counter_ns()
        stats = self.stats
        stats.events_in += 1
        if self.measure_bytes:
            stats.raw_bytes += encoded_size(raw)
        if type(raw) is dict:
            reason = check_event(raw)
            event = raw
        else:
            event, reason = parse_event(raw)  # type: ignore[assignment]
        if reason is not None:
            stats.rejected.add(reason, raw)
        else:
            fired = self.engine.advance(event)
            if fired:
                self._handle(fired, started)
            for name, pipe in self._pipelines:
                for record in pipe.push(event):
                    self._store(name, record, started)
        if stats.events_in % self.checkpoint_every == 0:
            self.checkpoint()

    def _handle(self, fired: list[Match], started: int) -> None:
        self.stats.triggers_fired += len(fired)
        for match in fired:
            task = self.tasks.get(match.task)
            if task is None or task.on_match is None:
                continue
            try:
                records = list(task.on_match(match))
            except Exception as exc:  # a failing task must not stop the others
                self.stats.handler_errors += 1
                self.last_handler_error = f"{match.task}: {exc.__class__.__name__}: {exc}"
                continue
            for record in records:
                self._store(match.task, record, started)

    def _store(self, task: str, record: dict[str, Any], started: int) -> None:
        self.stats.feature_bytes += self.store.add_feature(task, record)
        self.stats.features_out += 1
        self.stats.latencies_ns.append(time.perf_counter_ns() - started)

    def finish(self) -> RunStats:
        """End of stream: fire pending negations, close windows, final checkpoint."""
        started = time.perf_counter_ns()
        pending = self.engine.flush()
        if pending:
            self._handle(pending, started)
        for name, pipe in self._pipelines:
            for record in pipe.flush():
                self._store(name, record, started)
        self.store.set_meta("finished", True)
        self.checkpoint()
        return self.stats

    def run(self, source: Source, fresh: bool = False, limit: int | None = None,
            progress: Callable[[int], None] | None = None) -> RunStats:
        """Run ``source`` to its end (or ``limit`` records), resuming from a checkpoint."""
        names = ",".join(f"{n}@{t.version}" for n, t in sorted(self.tasks.items()))
        if fresh:
            self.store.reset()
        offset = self.resume(f"{source.fingerprint()}|{names}")
        if self.finished():
            return self.stats
        began = time.perf_counter()
        process = self.process
        count = 0
        for raw in source.events(start=offset):
            process(raw)
            count += 1
            if progress is not None and count % 4096 == 0:
                progress(4096)
            if limit is not None and count >= limit:
                self.checkpoint()
                self.stats.elapsed_s = time.perf_counter() - began
                return self.stats
        self.finish()
        self.stats.elapsed_s = time.perf_counter() - began
        return self.stats
