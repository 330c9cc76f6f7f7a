"""End to end: render the backend template, pip-install it as a distribution, see it listed."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[2] / "plugins" / "_template"


def test_rendered_template_installs_and_is_listed(
    tmp_path: Path, walle_cmd: list[str], env_with_path: Callable[[Path], dict[str, str]]
) -> None:
    rendered = tmp_path / "walle-backend-tmplcheck"
    render = subprocess.run(
        [sys.executable, str(TEMPLATE / "render.py"), "tmplcheck", str(rendered)],
        capture_output=True, text=True, timeout=60,
    )
    assert render.returncode == 0, render.stderr
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), str(rendered)],
        capture_output=True, text=True, timeout=300,
    )
    assert install.returncode == 0, install.stderr
    assert list(site.glob("walle_backend_tmplcheck-0.1.0.dist-info"))

    result = subprocess.run([*walle_cmd, "backends", "list", "--probe", "--json"],
                            env=env_with_path(site), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["tmplcheck"]["distribution"] == "walle-backend-tmplcheck"
    assert rows["tmplcheck"]["status"] == "available", rows["tmplcheck"]["reason"]
    assert rows["reference"]["status"] == "available"


def test_render_refuses_bad_names(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(TEMPLATE / "render.py"), "Bad-Name", str(tmp_path / "x")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and "must be lowercase" in result.stderr
