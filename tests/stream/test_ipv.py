"""The IPV task: stream features equal a pandas batch computation over the same log."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pandas as pd

from walle_core.stream.events import parse_event
from walle_core.stream.runtime import StreamRuntime
from walle_core.stream.source import load_source
from walle_core.stream.store import StreamStore
from walle_core.stream.task import load_task

from .conftest import IPV_DIR, ev


def as_frame(records: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, columns=columns)
    return frame.sort_values(["user", "enter_ts"]).reset_index(drop=True).astype(object)


def assert_same_features(stream: list[dict[str, Any]], raw: list[Any], batch: Any) -> None:
    valid = [e for e in (parse_event(r)[0] for r in raw) if e is not None]
    reference = batch.ipv_features(valid)
    assert len(reference) > 50  # the log really contains visits
    pd.testing.assert_frame_equal(as_frame(stream, batch.COLUMNS),
                                  reference.astype(object), check_dtype=False)


def test_ipv_matches_batch_on_synthetic_log(synthetic_events: list[Any], ipv_batch: Any) -> None:
    rt = StreamRuntime([load_task(IPV_DIR)])
    for raw in synthetic_events:
        rt.process(raw)
    rt.finish()
    assert rt.stats.rejected.total > 0  # the log has malformed records, and they did no harm
    assert_same_features(list(rt.store.features()), synthetic_events, ipv_batch)


def test_ipv_record_shape() -> None:
    rt = StreamRuntime([load_task(IPV_DIR)])
    log = [ev("u", "page_enter", 100, "item_detail", item_id="i9"),
           ev("u", "scroll", 110, "item_detail"), ev("u", "exposure", 120, "item_detail"),
           ev("u", "favorite", 130, "item_detail"), ev("u", "add_cart", 140, "item_detail"),
           ev("u", "buy", 150, "item_detail"), ev("u", "click", 160, "item_detail"),
           ev("v", "click", 165, "home"), ev("u", "page_exit", 170, "item_detail", item_id="i9")]
    for event in log:
        rt.process(event)
    assert list(rt.store.features()) == [{
        "user": "u", "item_id": "i9", "enter_ts": 100, "exit_ts": 170, "dwell_ms": 70,
        "favorite": 1, "add_cart": 1, "buy": 1, "scroll": 1, "exposure": 1, "click": 1}]
    assert rt.store.pending_uploads() == 1
    ids, payload = rt.store.upload_batch()
    assert len(ids) == 1 and payload
    rt.store.mark_uploaded(ids)
    assert rt.store.pending_uploads() == 0


def write_jsonl(path: Path, events: list[Any]) -> None:
    with path.open("w") as handle:
        for raw in events:
            handle.write((raw if isinstance(raw, str) else json.dumps(raw)) + "\n")


def test_ipv_over_replayed_jsonl_and_csv(tmp_path: Path, synthetic_events: list[Any],
                                         ipv_batch: Any) -> None:
    jsonl = tmp_path / "events.jsonl"
    write_jsonl(jsonl, synthetic_events)
    valid = [e for e in synthetic_events if isinstance(e, dict) and parse_event(e)[0]]
    table = tmp_path / "events.csv"
    with table.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["user", "id", "ts", "page", "args"])
        writer.writeheader()
        for event in valid:
            writer.writerow({**event, "args": json.dumps(event["args"])})
    replay = load_source("replay")
    for path in (jsonl, table):
        rt = StreamRuntime([load_task(IPV_DIR)], StreamStore())
        rt.run(replay.from_options({"path": str(path)}))
        assert_same_features(list(rt.store.features()), synthetic_events, ipv_batch)


def test_in_process_restart_from_checkpoint(tmp_path: Path, synthetic_events: list[Any],
                                            ipv_batch: Any) -> None:
    path = tmp_path / "events.jsonl"
    write_jsonl(path, synthetic_events)
    source = load_source("replay").from_options({"path": str(path)})
    state = tmp_path / "state.sqlite"
    first = StreamRuntime([load_task(IPV_DIR)], StreamStore(state), checkpoint_every=997)
    first.run(source, limit=len(synthetic_events) // 2 + 13)
    first.process(synthetic_events[-1])  # uncommitted work, lost with the "crash"
    first.store.conn.close()
    second = StreamRuntime([load_task(IPV_DIR)], StreamStore(state), checkpoint_every=997)
    stats = second.run(source)
    assert stats.resumed_from == len(synthetic_events) // 2 + 13
    assert stats.events_in == len(synthetic_events)
    assert_same_features(list(second.store.features()), synthetic_events, ipv_batch)


def test_interleaved_and_mismatched_exits_close_only_their_own_item(ipv_batch: Any) -> None:
    """An exit closes the visit of its own item only: nested visits, a stray exit of another item,
    a re-entered item (the later enter wins), an exit with no item, all as the batch job says."""
    d = "item_detail"
    log = [ev("u", "page_enter", 100, d, item_id="A"), ev("u", "scroll", 110, d),
           ev("u", "page_enter", 120, d, item_id="B"), ev("u", "click", 130, d),
           ev("u", "page_exit", 140, d, item_id="C"),  # no visit of C: closes nothing
           ev("u", "page_exit", 150, d),  # no item: closes nothing
           ev("u", "page_exit", 160, d, item_id="A"),  # closes A (B still open)
           ev("u", "favorite", 170, d), ev("u", "page_exit", 180, d, item_id="B"),
           ev("u", "page_enter", 200, d, item_id="A"), ev("u", "buy", 205, d),
           ev("u", "page_enter", 210, d, item_id="A"), ev("u", "add_cart", 215, d),
           ev("u", "page_exit", 220, d, item_id="A"),  # pairs with the enter at 210
           ev("v", "page_enter", 230, d, item_id="A"), ev("u", "page_exit", 240, d, item_id="A"),
           ev("v", "page_exit", 250, d, item_id="A")]
    rt = StreamRuntime([load_task(IPV_DIR)])
    for event in log:
        rt.process(event)
    rt.finish()
    stream = list(rt.store.features())
    assert [(f["user"], f["item_id"], f["enter_ts"], f["exit_ts"]) for f in stream] == [
        ("u", "A", 100, 160), ("u", "B", 120, 180), ("u", "A", 210, 220), ("v", "A", 230, 250)]
    assert stream[0]["scroll"] == 1 and stream[0]["click"] == 1 and stream[0]["favorite"] == 0
    assert stream[1]["click"] == 1 and stream[1]["favorite"] == 1 and stream[2]["add_cart"] == 1
    reference = ipv_batch.ipv_features(log)
    pd.testing.assert_frame_equal(as_frame(stream, ipv_batch.COLUMNS),
                                  reference.astype(object), check_dtype=False)
