"""Upload accounting: what leaves the device as features versus what the raw events weigh.

Walle's claim is that computing features at the source saves most of the upload. Both sides are
measured the same way, as compact JSON lines and as zlib-compressed batches (the upload queue sends
compressed batches), so the ratio is not flattered by comparing compressed with uncompressed.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from typing import Any

from walle_core.stream.source import RawEvent
from walle_core.stream.store import StreamStore, encode_batch

BATCH = 1000


def raw_sizes(events: Iterable[RawEvent]) -> tuple[int, int]:
    """(JSON bytes, zlib bytes) of raw events sent as compressed JSON-lines batches."""
    plain = packed = 0
    lines: list[str] = []
    for raw in events:
        if isinstance(raw, bytes):
            raw = raw.decode(errors="replace")
        lines.append(raw if isinstance(raw, str) else json.dumps(raw, separators=(",", ":")))
        if len(lines) == BATCH:
            plain, packed = _add(lines, plain, packed)
            lines = []
    if lines:
        plain, packed = _add(lines, plain, packed)
    return plain, packed


def _add(lines: list[str], plain: int, packed: int) -> tuple[int, int]:
    blob = ("\n".join(lines) + "\n").encode()
    return plain + len(blob), packed + len(zlib.compress(blob, 6))


def feature_sizes(store: StreamStore) -> tuple[int, int]:
    """(JSON-lines bytes, upload payload bytes) of every stored feature, in upload batches.

    The payload is what the upload queue really sends (:func:`encode_batch`: field names once per
    batch, rows of values, zlib)."""
    plain = packed = 0
    rows = store.conn.execute("SELECT task, record FROM features ORDER BY id")
    while True:
        chunk = rows.fetchmany(BATCH)
        if not chunk:
            break
        plain += sum(len(r) + 1 for _, r in chunk)
        packed += len(encode_batch(chunk))
    return plain, packed


def upload_report(store: StreamStore, events: Iterable[RawEvent]) -> dict[str, Any]:
    raw_plain, raw_packed = raw_sizes(events)
    feat_plain, feat_packed = feature_sizes(store)
    return {
        "raw_bytes": raw_plain, "raw_bytes_zlib": raw_packed,
        "feature_bytes_json": feat_plain, "upload_bytes": feat_packed,
        "saving_json_vs_json": 1 - feat_plain / raw_plain if raw_plain else None,
        "saving_upload_vs_raw": 1 - feat_packed / raw_plain if raw_plain else None,
        "saving_upload_vs_raw_zlib": 1 - feat_packed / raw_packed if raw_packed else None,
    }
