"""Benchmark command: ``walle bench MODEL``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add ``walle bench`` to ``app`` (filled in by the benchmark work)."""
