"""Stateful stream operators: filter, map, key_by, windows and aggregates, with keyed state.

A :class:`Pipeline` is a straight chain built fluently::

    Pipeline("clicks_per_minute").filter(lambda e: e["id"] == "click") \\
        .key_by(lambda e: e["user"]).window(Tumbling(60_000)).aggregate(Count())

``push(event)`` returns the records the event completes (closed windows). State is per key and
lives in :class:`KeyedState`: an in-memory write-back cache over the store's ``state`` table, so the
hot path touches only dicts and a checkpoint writes just the keys that changed. Accumulators and
window contents are JSON values so that they survive a restart byte for byte.

Windows close on event time: a key's window is emitted when a later event of that key passes its
end (or its session gap), or at :meth:`Pipeline.flush` at the end of the stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from walle_core.stream.events import Event
from walle_core.stream.store import StreamStore


class KeyedState:
    """Per-key JSON state of one operator namespace, cached in memory, persisted at checkpoints."""

    def __init__(self, ns: str, store: StreamStore | None = None) -> None:
        self.ns = ns
        self.store = store
        self._cache: dict[str, Any] = {}
        self._dirty: set[str] = set()
        self._removed: set[str] = set()

    def get(self, key: str) -> Any:
        if key in self._cache:
            return self._cache[key]
        value = None if self.store is None else self.store.load_state(self.ns, key)
        self._cache[key] = value
        return value

    def put(self, key: str, value: Any) -> None:
        self._cache[key] = value
        self._dirty.add(key)
        self._removed.discard(key)

    def delete(self, key: str) -> None:
        self._cache[key] = None
        self._dirty.discard(key)
        self._removed.add(key)

    def keys(self) -> list[str]:
        stored = set() if self.store is None else set(self.store.state_keys(self.ns))
        live = {k for k, v in self._cache.items() if v is not None}
        return sorted((stored - self._removed) | live)

    def checkpoint(self) -> None:
        """Write changed keys to the store (inside the checkpoint's transaction)."""
        if self.store is not None and (self._dirty or self._removed):
            self.store.write_state(self.ns, {k: self._cache[k] for k in self._dirty},
                                   self._removed)
        self._dirty.clear()
        self._removed.clear()


# -- aggregates ------------------------------------------------------------------------------------

class Aggregate:
    """An accumulator over values: ``zero`` → ``add``... → ``result``; all JSON values."""

    def zero(self) -> Any:
        raise NotImplementedError

    def add(self, acc: Any, event: Event) -> Any:
        raise NotImplementedError

    def result(self, acc: Any) -> Any:
        return acc


class Count(Aggregate):
    def zero(self) -> int:
        return 0

    def add(self, acc: int, event: Event) -> int:
        return acc + 1


@dataclass
class Sum(Aggregate):
    value: Callable[[Event], float]

    def zero(self) -> float:
        return 0

    def add(self, acc: float, event: Event) -> float:
        return acc + self.value(event)


@dataclass
class Max(Aggregate):
    value: Callable[[Event], float]

    def zero(self) -> float | None:
        return None

    def add(self, acc: float | None, event: Event) -> float:
        v = self.value(event)
        return v if acc is None or v > acc else acc


@dataclass
class Mean(Aggregate):
    value: Callable[[Event], float]

    def zero(self) -> list[float]:
        return [0.0, 0]

    def add(self, acc: list[float], event: Event) -> list[float]:
        return [acc[0] + self.value(event), acc[1] + 1]

    def result(self, acc: list[float]) -> float | None:
        return acc[0] / acc[1] if acc[1] else None


@dataclass
class CountBy(Aggregate):
    """Counts per category (e.g. per event id): ``{"click": 3, "buy": 1}``."""

    category: Callable[[Event], str]

    def zero(self) -> dict[str, int]:
        return {}

    def add(self, acc: dict[str, int], event: Event) -> dict[str, int]:
        cat = self.category(event)
        acc[cat] = acc.get(cat, 0) + 1
        return acc


# -- windows ---------------------------------------------------------------------------------

class Window:
    """Assigns events to windows and says which windows a new event time closes."""

    def starts(self, ts: int) -> list[int]:
        raise NotImplementedError

    def end(self, start: int) -> int:
        raise NotImplementedError


@dataclass
class Tumbling(Window):
    size_ms: int

    def starts(self, ts: int) -> list[int]:
        return [ts - ts % self.size_ms]

    def end(self, start: int) -> int:
        return start + self.size_ms


@dataclass
class Sliding(Window):
    size_ms: int
    slide_ms: int

    def starts(self, ts: int) -> list[int]:
        last = ts - ts % self.slide_ms
        return list(range(last, ts - self.size_ms, -self.slide_ms))[::-1]

    def end(self, start: int) -> int:
        return start + self.size_ms


@dataclass
class CountWindow:
    """Every ``size`` events of a key form one window."""

    size: int


@dataclass
class Session:
    """A key's session closes after ``gap_ms`` without events."""

    gap_ms: int


WindowSpec = Tumbling | Sliding | CountWindow | Session
Op = tuple[str, Any]


class Pipeline:
    """A chain of operators ending (optionally) in a keyed window aggregate."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ops: list[Op] = []
        self.key_fn: Callable[[Event], str] | None = None
        self.window_spec: WindowSpec | None = None
        self.agg: Aggregate | None = None
        self.state = KeyedState(name)

    def filter(self, fn: Callable[[Event], bool]) -> Pipeline:
        self.ops.append(("filter", fn))
        return self

    def map(self, fn: Callable[[Event], Event]) -> Pipeline:
        self.ops.append(("map", fn))
        return self

    def key_by(self, fn: Callable[[Event], str]) -> Pipeline:
        self.key_fn = fn
        return self

    def window(self, spec: WindowSpec) -> Pipeline:
        self.window_spec = spec
        return self

    def aggregate(self, agg: Aggregate) -> Pipeline:
        self.agg = agg
        return self

    def bind(self, store: StreamStore | None) -> Pipeline:
        self.state = KeyedState(self.name, store)
        return self

    def push(self, event: Event) -> list[dict[str, Any]]:
        """Run one event through the chain; return the records it completes."""
        for kind, fn in self.ops:
            if kind == "filter":
                if not fn(event):
                    return []
            else:
                event = fn(event)
        if self.agg is None:
            return [event]
        key = self.key_fn(event) if self.key_fn is not None else ""
        from walle_core.stream.windowing import add_to_window

        return add_to_window(self, key, event)

    def flush(self) -> list[dict[str, Any]]:
        """End of stream: close every open window of every key."""
        from walle_core.stream.windowing import close_all

        return close_all(self)

    def checkpoint(self) -> None:
        self.state.checkpoint()
