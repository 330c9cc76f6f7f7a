"""Seeded e-commerce behaviour generator as a Walle stream source (``synthetic``).

The generator is deterministic for given options, which is what makes resuming exact: after a
checkpoint at record N the source regenerates and skips N records. Users' streams are merged in
timestamp order (ties by user), and a configurable fraction of records is deliberately malformed to
exercise the runtime's rejection path.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Iterator
from typing import Any, ClassVar

from walle_core.plugin import PLUGIN_API_VERSION
from walle_core.stream.source import RawEvent, Source, SourceError, SourceOption
from walle_source_synthetic.behaviour import Behaviour, user_events

__all__ = ["Behaviour", "SyntheticSource"]

_MALFORMED: tuple[Any, ...] = (
    "{not json",
    {"user": "u0", "id": "click", "page": "home", "args": {}},  # no ts
    {"user": "u0", "id": "click", "ts": "yesterday", "page": "home", "args": {}},
    {"user": "", "id": "click", "ts": 1, "page": "home", "args": {}},
    {"user": "u0", "id": "click", "ts": 1, "page": "home", "args": "x=1"},
    ["an", "array"],
)


def _tagged(n: int, events: Iterator[dict[str, Any]]) -> Iterator[tuple[int, int, Any]]:
    for event in events:
        yield event["ts"], n, event


class SyntheticSource(Source):
    """Generate seeded e-commerce app behaviour: sessions, pages, item visits, clicks, buys."""

    name: ClassVar[str] = "synthetic"
    api_version: ClassVar[int] = PLUGIN_API_VERSION
    options: ClassVar[dict[str, SourceOption]] = {
        "users": SourceOption(int, "number of users", 100),
        "minutes": SourceOption(float, "minutes of simulated time", 10.0),
        "seed": SourceOption(int, "random seed", 0),
        "items": SourceOption(int, "catalogue size", 1000),
        "start_ts": SourceOption(int, "timestamp (ms) of the simulation start", 1_700_000_000_000),
        "malformed": SourceOption(float, "fraction of deliberately malformed records", 0.0),
        "pace": SourceOption(float, "events per second to deliver at; 0 = as fast as possible",
                             0.0),
    }

    def __init__(self, users: int = 100, minutes: float = 10.0, seed: int = 0,
                 items: int = 1000, start_ts: int = 1_700_000_000_000, malformed: float = 0.0,
                 pace: float = 0.0) -> None:
        if users < 1 or minutes <= 0 or items < 1 or not 0 <= malformed < 1:
            raise SourceError("need users >= 1, minutes > 0, items >= 1, 0 <= malformed < 1")
        self.users, self.minutes, self.seed = users, minutes, seed
        self.start_ts, self.malformed, self.pace = start_ts, malformed, pace
        self.model = Behaviour(items=items)

    def fingerprint(self) -> str:
        return (f"synthetic:users={self.users}:minutes={self.minutes}:seed={self.seed}:"
                f"items={self.model.items}:start={self.start_ts}:malformed={self.malformed}")

    def _merged(self) -> Iterator[RawEvent]:
        end = self.start_ts + int(self.minutes * 60_000)
        streams = []
        for n in range(self.users):
            user = f"u{n}"
            rng = random.Random(f"{self.seed}:{user}")
            streams.append(_tagged(n, user_events(user, rng, self.start_ts, end, self.model)))
        noise = random.Random(f"{self.seed}:malformed")
        for ts, _, event in heapq.merge(*streams, key=lambda item: (item[0], item[1])):
            if ts >= end:
                continue
            if self.malformed and noise.random() < self.malformed:
                yield noise.choice(_MALFORMED)
            yield event

    def events(self, start: int = 0) -> Iterator[RawEvent]:
        records = self._merged()
        for _ in range(start):
            if next(records, None) is None:
                return
        if self.pace <= 0:
            yield from records
            return
        began = time.perf_counter()
        for n, record in enumerate(records):
            wait = began + n / self.pace - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            yield record
