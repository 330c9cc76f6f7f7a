"""An installed plugin whose module fails to import is listed with its error; others still load.

The broken distribution is real metadata on sys.path (a dist-info folder with entry points), so
this goes through importlib.metadata and stevedore exactly as a pip-installed plugin would.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from walle_core.plugin.probing import driver_statuses


def make_broken_distribution(root: Path) -> Path:
    site = root / "site"
    info = site / "walle_backend_broken-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: walle-backend-broken\nVersion: 0.3\n"
    )
    (info / "entry_points.txt").write_text(
        "[walle.backends]\nbroken = walle_backend_broken:BrokenBackend\n"
    )
    (site / "walle_backend_broken.py").write_text(
        "import walle_no_such_dependency_abc  # the plugin's missing dependency\n"
    )
    return site


def test_import_failure_is_listed_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_broken_distribution(tmp_path)
    monkeypatch.syspath_prepend(str(site))
    found = {row.name: row for row in driver_statuses("backends", probe=True)}
    assert found["broken"].status == "error"
    assert found["broken"].distribution == "walle-backend-broken"
    assert "walle_no_such_dependency_abc" in found["broken"].reason
    assert found["reference"].status == "available"


def test_cli_survives_a_broken_plugin(
    tmp_path: Path, walle_cmd: list[str], env_with_path: Callable[[Path], dict[str, str]]
) -> None:
    site = make_broken_distribution(tmp_path)
    result = subprocess.run(
        [*walle_cmd, "backends", "list", "--json"],
        env=env_with_path(site), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    found = {row["name"]: row for row in json.loads(result.stdout)}
    assert found["broken"]["status"] == "error"
    assert found["reference"]["status"] == "unprobed"
    plugins = subprocess.run(
        [*walle_cmd, "plugins", "list", "--json"],
        env=env_with_path(site), capture_output=True, text=True, timeout=60,
    )
    assert plugins.returncode == 0, plugins.stderr
    broken = [d for d in json.loads(plugins.stdout) if d["distribution"] == "walle-backend-broken"]
    assert broken and "walle_no_such_dependency_abc" in broken[0]["errors"][0]
