"""Plugin listing commands (being written)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add ``backends``, ``plugins``, ``sources`` and ``policies`` listings."""
