"""Stream runtime benchmark: ``walle stream bench`` figures plus an IPV-only end-to-end run.

Run: ``.venv/bin/python benchmarks/stream/bench_stream.py [--users N] [--minutes M]``.
Prints JSON: the 100-task trie/runtime figures for both trigger mixes (demanding and
realistic), and the IPV task alone through the full runtime
(validation, trie, handler, SQLite insert) with its latency and upload saving.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from walle_core.stream.bench import MIXES, bench_events, run_bench
from walle_core.stream.report import upload_report
from walle_core.stream.runtime import StreamRuntime
from walle_core.stream.source import load_source
from walle_core.stream.task import load_task

IPV = Path(__file__).resolve().parents[2] / "tasks" / "ipv_feature"


def ipv_only(users: int, minutes: float) -> dict[str, object]:
    source = load_source("synthetic").from_options({"users": str(users), "minutes": str(minutes)})
    events = list(source.events())
    runtime = StreamRuntime([load_task(IPV)], measure_bytes=False, checkpoint_every=50_000)
    began = time.perf_counter()
    for event in events:
        runtime.process(event)
    runtime.finish()
    elapsed = time.perf_counter() - began
    return {"events": len(events), "events_per_s": len(events) / elapsed,
            "features": runtime.stats.features_out,
            "latency_p50_ms": runtime.stats.percentile_ms(0.5),
            "latency_p99_ms": runtime.stats.percentile_ms(0.99),
            "upload": upload_report(runtime.store, events)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    events = bench_events(args.users, args.minutes)
    result: dict[str, object] = {
        f"tasks_100_{mix}": run_bench(repeat=args.repeat, mix=mix, events=events) for mix in MIXES}
    result["ipv_only"] = ipv_only(args.users, args.minutes)
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
