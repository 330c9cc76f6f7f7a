"""The walle CLI's plugin listings, as a user runs them (real subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys

from walle_core import __version__


def run(cmd: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120)


def test_version(walle_cmd: list[str]) -> None:
    result = run(walle_cmd, "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"walle {__version__}"


def test_backends_list_json_has_every_field(walle_cmd: list[str]) -> None:
    result = run(walle_cmd, "backends", "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    reference = rows["reference"]
    assert set(reference) >= {"name", "distribution", "version", "api_version", "status",
                              "reason", "devices"}
    assert reference["distribution"] == "walle-core"


def test_backends_probe_reports_reference_available_with_a_device(walle_cmd: list[str]) -> None:
    result = run(walle_cmd, "backends", "list", "--probe", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["reference"]["status"] == "available"
    assert rows["reference"]["devices"][0]["kind"] == "cpu"


def test_table_output_and_other_lists(walle_cmd: list[str]) -> None:
    table = run(walle_cmd, "backends", "list")
    assert table.returncode == 0 and "reference" in table.stdout
    for kind in ("sources", "policies"):
        listing = run(walle_cmd, kind, "list", "--json")
        assert listing.returncode == 0, listing.stderr
        assert isinstance(json.loads(listing.stdout), list)
    plugins = run(walle_cmd, "plugins", "list", "--json")
    names = [item["distribution"] for item in json.loads(plugins.stdout)]
    assert "walle-core" in names


def test_plain_listing_imports_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from walle_core.cli.app import app\n"
        "from typer.testing import CliRunner\n"
        "r = CliRunner().invoke(app, ['backends', 'list', '--json'])\n"
        "assert r.exit_code == 0, r.output\n"
        # numpy is allowed: the built-in reference backend is numpy (about 50 ms to import)
        "heavy = [m for m in ('numba', 'llvmlite', 'pyopencl', 'vulkan', 'onnx', 'torch') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"plain listing imported {result.stdout.strip()}"


def test_bad_command_exits_non_zero(walle_cmd: list[str]) -> None:
    result = run(walle_cmd, "backends", "lsit")
    assert result.returncode == 2
