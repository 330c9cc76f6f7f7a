"""Engine commands: ``walle model ...``, ``walle run``, ``walle conformance``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the engine's commands to ``app`` (filled in by the engine issue)."""
