"""Stream runtime commands: ``walle stream ...``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the stream runtime's commands to ``app`` (filled in by the stream issue)."""
