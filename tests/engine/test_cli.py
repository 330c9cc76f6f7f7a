"""The engine commands: inspect, explain, run, conformance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from walle_core.cli.app import app

from .conftest import LIGHT

RUNNER = CliRunner()
MODEL = str(LIGHT / "light_squeezenet.onnx")


def test_inspect_json() -> None:
    result = RUNNER.invoke(app, ["model", "inspect", MODEL, "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["inputs"][0]["shape"] == [1, 3, 224, 224]
    assert info["op_histogram"]["Conv"] == 26
    assert info["flops"] > 1e8


def test_explain_reports_decomposition_and_memory() -> None:
    result = RUNNER.invoke(app, ["model", "explain", MODEL, "--backend", "reference", "--runs",
                                 "0", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ops_before"]["Conv"] == 26
    assert "Conv" not in report["primitives_after"]
    assert report["primitives_after"]["MatMul"] == 26
    assert report["peak_memory_bytes"] < report["memory_without_reuse_bytes"]


def test_run_writes_outputs_by_name(tmp_path: Path) -> None:
    n = 3 * 224 * 224
    np.savez(tmp_path / "in.npz", data_0=(np.arange(n).reshape(1, 3, 224, 224) / n)
             .astype(np.float32))
    result = RUNNER.invoke(app, ["run", MODEL, "--inputs", str(tmp_path / "in.npz"),
                                 "--output", str(tmp_path / "out.npz")])
    assert result.exit_code == 0, result.output
    with np.load(tmp_path / "out.npz") as out:
        assert out["softmaxout_1"].shape == (1, 1000, 1, 1)


def test_run_bad_input_exit_code(tmp_path: Path) -> None:
    np.savez(tmp_path / "in.npz", wrong=np.zeros(3, np.float32))
    result = RUNNER.invoke(app, ["run", MODEL, "--inputs", str(tmp_path / "in.npz"),
                                 "--output", str(tmp_path / "out.npz")])
    assert result.exit_code == 2
    assert "unknown input name" in result.output


def test_conformance_command_json() -> None:
    result = RUNNER.invoke(app, ["conformance", "--filter", r"test_relu_cpu$", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["passed"] == 1
