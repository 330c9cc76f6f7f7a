"""A real ``walle stream run`` killed with SIGKILL mid-run, then resumed: same features."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from walle_core.stream.events import parse_event

from .conftest import IPV_DIR

LAUNCH = "import sys; from walle_core.cli.app import main; sys.argv[0] = 'walle'; main()"


def walle(*args: str) -> list[str]:
    return [sys.executable, "-c", LAUNCH, *args]


def checkpointed(state: Path) -> int:
    try:
        with sqlite3.connect(state) as conn:
            row = conn.execute("SELECT value FROM meta WHERE name = 'counters'").fetchone()
    except sqlite3.Error:
        return 0
    return 0 if row is None else int(json.loads(row[0])["events_in"])


def test_sigkill_then_resume_loses_and_doubles_nothing(tmp_path: Path, synthetic_events: list[Any],
                                                       ipv_batch: Any) -> None:
    log = tmp_path / "events.jsonl"
    log.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n"
                           for r in synthetic_events))
    state, out = tmp_path / "state.sqlite", tmp_path / "features.jsonl"
    common = ["stream", "run", "--task", str(IPV_DIR), "--state", str(state),
              "--output", str(out), "--checkpoint-every", "500", "--no-progress", "--json",
              "--source", "replay", "--path", str(log)]
    total = len(synthetic_events)
    proc = subprocess.Popen(walle(*common, "--rate", "15000"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while checkpointed(state) < total // 3 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    at_kill = checkpointed(state)
    assert 0 < at_kill < total, "the run must be killed in the middle"
    assert not out.exists()

    done = subprocess.run(walle(*common), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["resumed_from"] >= at_kill > 0
    assert summary["events_in"] == total
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary["features_out"] == len(records)
    valid = [e for e in (parse_event(r)[0] for r in synthetic_events) if e is not None]
    reference = ipv_batch.ipv_features(valid)
    got = pd.DataFrame.from_records(records, columns=ipv_batch.COLUMNS)
    got = got.sort_values(["user", "enter_ts"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got.astype(object), reference.astype(object), check_dtype=False)
