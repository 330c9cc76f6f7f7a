"""pluggy plugin manager and typed hook facade (being written)."""

from __future__ import annotations

from typing import Any


class Hooks:
    def register_commands(self, cli: Any) -> None:
        return None


def get_hooks() -> Hooks:
    return Hooks()
