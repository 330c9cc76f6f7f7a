"""Replay a recorded event log (JSONL or CSV) into the Walle stream runtime.

Registered as the ``replay`` source under ``walle.sources``; the core finds it only through that
entry point. JSONL lines are handed over undecoded, so the runtime's validation sees exactly what
was recorded and can reject malformed lines with a reason.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from walle_core.plugin import PLUGIN_API_VERSION
from walle_core.stream.source import RawEvent, Source, SourceError, SourceOption

__all__ = ["ReplaySource"]


def _format(text: str) -> str:
    if text not in ("auto", "jsonl", "csv"):
        raise ValueError("format must be auto, jsonl or csv")
    return text


class ReplaySource(Source):
    """Replay a JSONL or CSV event log, as fast as possible or at a set rate."""

    name: ClassVar[str] = "replay"
    api_version: ClassVar[int] = PLUGIN_API_VERSION
    options: ClassVar[dict[str, SourceOption]] = {
        "path": SourceOption(str, "event log: .jsonl (one JSON event a line) or .csv"),
        "rate": SourceOption(float, "events per second; 0 = as fast as possible", 0.0),
        "format": SourceOption(_format, "jsonl, csv or auto (from the suffix)", "auto"),
    }

    def __init__(self, path: str | Path | None = None, rate: float = 0.0,
                 format: str = "auto") -> None:
        if path is None:
            raise SourceError("the replay source needs --path FILE")
        self.path = Path(path)
        if not self.path.is_file():
            raise SourceError(f"event log {self.path} does not exist")
        self.rate = rate
        self.format = format if format != "auto" else (
            "csv" if self.path.suffix.lower() == ".csv" else "jsonl")

    def fingerprint(self) -> str:
        stat = self.path.stat()
        return f"replay:{self.path.resolve()}:{stat.st_size}:{self.format}"

    def events(self, start: int = 0) -> Iterator[RawEvent]:
        records = self._jsonl() if self.format == "jsonl" else self._csv()
        for _ in range(start):
            if next(records, None) is None:
                return
        if self.rate <= 0:
            yield from records
            return
        began = time.perf_counter()
        for n, record in enumerate(records):
            wait = began + n / self.rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            yield record

    def _jsonl(self) -> Iterator[str]:
        with self.path.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                line = line.strip()
                if line:
                    yield line

    def _csv(self) -> Iterator[dict[str, Any] | str]:
        with self.path.open(newline="", encoding="utf-8", errors="replace") as handle:
            for row in csv.DictReader(handle):
                yield _decode_row(row)


def _decode_row(row: dict[str, Any]) -> dict[str, Any]:
    """CSV cells are text: ``ts`` becomes an int and ``args`` an object when they parse."""
    event = dict(row)
    ts = event.get("ts")
    if isinstance(ts, str) and ts.strip().isdigit():
        event["ts"] = int(ts)
    args = event.get("args")
    if isinstance(args, str):
        try:
            event["args"] = json.loads(args) if args.strip() else {}
        except ValueError:
            pass  # left as text: the runtime rejects it with a reason
    return event
