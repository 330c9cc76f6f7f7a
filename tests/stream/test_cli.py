"""``walle stream ...`` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from walle_core.cli.app import app

from .conftest import IPV_DIR

runner = CliRunner()


def test_stream_run_synthetic_json_summary(tmp_path: Path) -> None:
    out = tmp_path / "ipv.jsonl"
    result = runner.invoke(app, [
        "stream", "run", "--source", "synthetic", "--users", "20", "--minutes", "20",
        "--malformed", "0.02", "--task", str(IPV_DIR), "--output", str(out),
        "--state", str(tmp_path / "s.sqlite"), "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["finished"] is True
    assert summary["rejected"] > 0
    assert summary["features_out"] == summary["triggers_fired"] == len(out.read_text().splitlines())
    assert summary["latency_p99_ms"] is not None and summary["events_per_s"] > 0
    assert 0 < summary["upload"]["upload_bytes"] < summary["upload"]["raw_bytes"]


def test_stream_run_table_and_rerun_is_idempotent(tmp_path: Path) -> None:
    args = ["stream", "run", "--source", "synthetic", "--users", "5", "--minutes", "5",
            "--task", str(IPV_DIR), "--state", str(tmp_path / "s.sqlite"), "--no-progress"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "features_out" in first.output and "upload.saving_upload_vs_raw" in first.output
    again = runner.invoke(app, [*args, "--json"])
    assert json.loads(again.output)["features_stored"] == json.loads(
        runner.invoke(app, [*args, "--json", "--fresh"]).output)["features_stored"]


def test_unknown_source_and_bad_option_fail_clearly(tmp_path: Path) -> None:
    result = runner.invoke(app, ["stream", "run", "--source", "nope", "--task", str(IPV_DIR)])
    assert result.exit_code == 2
    assert "no usable source 'nope'" in result.output and "synthetic" in result.output
    result = runner.invoke(app, ["stream", "run", "--source", "synthetic", "--colour", "red",
                                 "--task", str(IPV_DIR)])
    assert result.exit_code == 2 and "no option colour" in result.output


def test_bad_task_directory(tmp_path: Path) -> None:
    result = runner.invoke(app, ["stream", "run", "--source", "synthetic", "--task",
                                 str(tmp_path)])
    assert result.exit_code == 2 and "no task.toml" in result.output


def test_stream_sources_and_bench() -> None:
    listed = runner.invoke(app, ["stream", "sources", "--json"])
    assert {"replay", "synthetic"} <= set(json.loads(listed.output))
    bench = runner.invoke(app, ["stream", "bench", "--users", "20", "--minutes", "5",
                                "--repeat", "1", "--json"])
    assert bench.exit_code == 0, bench.output
    figures = json.loads(bench.output)
    assert set(figures) == {"demanding", "realistic"}  # both mixes, never one alone
    for mix in figures.values():
        assert mix["tasks"] == 100 and mix["trie_events_per_s"] > 0
