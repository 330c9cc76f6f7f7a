"""Shared fixtures for the core tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# calibration in this process, where tests can watch and replace it (sessions otherwise
# calibrate in a child process: search/profile.py, _calibrate_in_child)
os.environ.setdefault("WALLE_CALIBRATE_IN_PROCESS", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh_hooks() -> Iterator[None]:
    """A process-wide hooks manager that starts empty and is forgotten afterwards."""
    from walle_core.plugin.manager import reset_hooks

    reset_hooks()
    yield
    reset_hooks()


@pytest.fixture
def walle_cmd() -> list[str]:
    """The walle console script of the running interpreter's environment."""
    script = Path(sys.executable).parent / "walle"
    return [str(script)] if script.exists() else [sys.executable, "-m", "walle_core.cli.app"]


@pytest.fixture
def env_with_path() -> Callable[[Path], dict[str, str]]:
    """Build an environment whose PYTHONPATH starts with a given folder."""

    def build(extra: Path) -> dict[str, str]:
        env = dict(os.environ)
        parts = [str(extra), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
        return env

    return build
