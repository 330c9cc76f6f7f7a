"""On-device storage for the stream runtime: features, the upload queue, keyed state, checkpoints.

One SQLite file holds everything so that one transaction can make a checkpoint atomic: the source
offset, the trigger engine's snapshot, every operator's dirty keyed state, and the feature records
produced since the previous checkpoint are committed together. After a kill, the runtime reopens
the file, restores the last checkpoint and replays the source from its offset: records written
after that checkpoint were never committed, so nothing is lost and nothing is counted twice.

Feature records are ``INSERT``-ed as they are produced (inside the open transaction, so "stored"
costs microseconds); durability comes at each checkpoint's ``COMMIT``. WAL with
``synchronous=NORMAL`` survives a process kill; power loss may drop the last checkpoint, which the
source offset then replays.
"""

from __future__ import annotations

import json
import sqlite3
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state (ns TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
                                  PRIMARY KEY (ns, key));
CREATE TABLE IF NOT EXISTS features (id INTEGER PRIMARY KEY, task TEXT NOT NULL,
                                     record TEXT NOT NULL, uploaded INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS features_pending ON features (uploaded, id);
"""


def encode_batch(rows: list[tuple[str, str]]) -> bytes:
    """Upload payload of ``(task, record JSON)`` rows: per task, the field names once and each
    record as a row of values (records of one task share their fields), as zlib'd JSON.

    The dedupe key on the cloud side is the device id plus the records' row ids."""
    tables: dict[str, dict[str, Any]] = {}
    for task, text in rows:
        record = json.loads(text)
        fields = list(record)
        table = tables.setdefault(f"{task}|{','.join(fields)}",
                                  {"task": task, "fields": fields, "rows": []})
        table["rows"].append([record[f] for f in fields])
    blob = json.dumps(list(tables.values()), separators=(",", ":")).encode()
    return zlib.compress(blob, 6)


class StreamStore:
    """The SQLite file behind one stream run (``":memory:"`` for tests and benchmarks)."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(_SCHEMA)
        self.conn.execute("BEGIN")
        self._insert_sql = "INSERT INTO features (task, record) VALUES (?, ?)"

    # -- features and the upload queue -----------------------------------------------------------

    def add_feature(self, task: str, record: dict[str, Any]) -> int:
        """Store one feature record (queued for upload; durable at the next checkpoint).

        Returns the record's size in bytes as it will be uploaded (compact JSON)."""
        text = json.dumps(record, separators=(",", ":"), sort_keys=True)
        self.conn.execute(self._insert_sql, (task, text))
        return len(text)

    def features(self, task: str | None = None) -> Iterator[dict[str, Any]]:
        sql = "SELECT record FROM features" + (" WHERE task = ?" if task else "") + " ORDER BY id"
        for (text,) in self.conn.execute(sql, (task,) if task else ()):
            yield json.loads(text)

    def count_features(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM features").fetchone()[0])

    def upload_batch(self, limit: int = 1000) -> tuple[list[int], bytes]:
        """The next batch to upload: feature ids and the payload (:func:`encode_batch`)."""
        rows = self.conn.execute(
            "SELECT id, task, record FROM features WHERE uploaded = 0 ORDER BY id LIMIT ?",
            (limit,)).fetchall()
        return [row[0] for row in rows], encode_batch([(t, r) for _, t, r in rows])

    def mark_uploaded(self, ids: list[int]) -> None:
        self.conn.executemany("UPDATE features SET uploaded = 1 WHERE id = ?", [(i,) for i in ids])

    def pending_uploads(self) -> int:
        sql = "SELECT COUNT(*) FROM features WHERE uploaded = 0"
        return int(self.conn.execute(sql).fetchone()[0])

    # -- keyed state and checkpoints -------------------------------------------------------------

    def load_state(self, ns: str, key: str) -> Any:
        row = self.conn.execute("SELECT value FROM state WHERE ns = ? AND key = ?",
                                (ns, key)).fetchone()
        return None if row is None else json.loads(row[0])

    def state_keys(self, ns: str) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT key FROM state WHERE ns = ?", (ns,))]

    def write_state(self, ns: str, changed: dict[str, Any], removed: set[str]) -> None:
        self.conn.executemany("INSERT OR REPLACE INTO state (ns, key, value) VALUES (?, ?, ?)",
                              [(ns, k, json.dumps(v)) for k, v in changed.items()])
        self.conn.executemany("DELETE FROM state WHERE ns = ? AND key = ?",
                              [(ns, k) for k in removed])

    def get_meta(self, name: str) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, name: str, value: Any) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                          (name, json.dumps(value, separators=(",", ":"))))

    def commit(self) -> None:
        """Make everything written since the last commit durable, atomically."""
        self.conn.execute("COMMIT")
        self.conn.execute("BEGIN")

    def reset(self) -> None:
        """Forget every feature, state and checkpoint (a fresh run on the same file)."""
        for table in ("meta", "state", "features"):
            self.conn.execute(f"DELETE FROM {table}")
        self.commit()

    def close(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.close()
