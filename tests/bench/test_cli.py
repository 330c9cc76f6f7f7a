"""``walle bench`` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from walle_core.cli.app import app


def test_bench_json_vs_onnxruntime(tiny_model: Path) -> None:
    result = CliRunner().invoke(
        app, ["bench", str(tiny_model), "--vs", "onnxruntime", "--json", "--runs", "3",
              "--warmup", "1", "--threads", "1"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (model,) = data["models"]
    assert [r["runner"] for r in model["results"]] == ["walle", "onnxruntime"]
    ort = model["results"][1]
    assert ort["status"] == "ok" and ort["median_ms"] <= ort["p90_ms"]
    assert {row["runner"] for row in data["summary"]} == {"walle", "onnxruntime"}


def test_bench_table_and_unknown_model(tiny_model: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["bench", str(tiny_model), "--vs", "onnxruntime,mnn", "-n", "2",
                                 "-w", "0"])
    assert result.exit_code == 0, result.output
    assert "onnxruntime" in result.stdout and "median ms" in result.stdout
    missing = runner.invoke(app, ["bench", "no_such_model", "--vs", "onnxruntime"])
    assert missing.exit_code == 1
