"""User-behaviour events: the one shape every source delivers and every task reads.

An event is a plain ``dict`` (no wrapper object) because the runtime's hot path is pure Python and
each avoided allocation or attribute hop is measurable. Validation is strict and explicit: a
malformed event is rejected with a reason and counted, never allowed to stop the runtime, and never
half-processed.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

Event = dict[str, Any]

REQUIRED_FIELDS: tuple[str, ...] = ("user", "id", "ts", "page", "args")


class Rejects:
    """Counts rejected events by reason and keeps the first few examples for diagnosis."""

    def __init__(self, keep_examples: int = 5) -> None:
        self.by_reason: Counter[str] = Counter()
        self.examples: list[tuple[str, str]] = []
        self._keep = keep_examples

    @property
    def total(self) -> int:
        return sum(self.by_reason.values())

    def add(self, reason: str, raw: object) -> None:
        self.by_reason[reason] += 1
        if len(self.examples) < self._keep:
            self.examples.append((reason, repr(raw)[:200]))

    def to_dict(self) -> dict[str, int]:
        return dict(self.by_reason)

    def load(self, counts: dict[str, int]) -> None:
        self.by_reason = Counter(counts)


def check_event(obj: object) -> str | None:
    """Return why ``obj`` is not a valid event, or ``None`` when it is one."""
    if type(obj) is not dict:
        return "not a JSON object"
    try:
        user = obj["user"]
        eid = obj["id"]
        ts = obj["ts"]
        page = obj["page"]
        args = obj["args"]
    except KeyError as missing:
        return f"missing field {missing.args[0]!r}"
    if type(user) is not str or not user:
        return "field 'user' must be a non-empty string"
    if type(eid) is not str or not eid:
        return "field 'id' must be a non-empty string"
    if type(ts) is not int or ts < 0:
        return "field 'ts' must be a non-negative integer (ms)"
    if type(page) is not str:
        return "field 'page' must be a string"
    if type(args) is not dict:
        return "field 'args' must be an object"
    return None


def parse_event(raw: str | bytes | dict[str, Any]) -> tuple[Event | None, str | None]:
    """Decode (if text) and validate one raw event: ``(event, None)`` or ``(None, reason)``."""
    if isinstance(raw, (str, bytes)):
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            return None, f"invalid JSON: {exc.msg}"
        except ValueError:
            return None, "invalid JSON"
    else:
        obj = raw
    reason = check_event(obj)
    if reason is not None:
        return None, reason
    return obj, None


def encoded_size(raw: str | bytes | dict[str, Any]) -> int:
    """Bytes of ``raw`` as it would travel (compact JSON for already-decoded events)."""
    if isinstance(raw, str):
        return len(raw.encode())
    if isinstance(raw, bytes):
        return len(raw)
    return len(json.dumps(raw, separators=(",", ":")).encode())
