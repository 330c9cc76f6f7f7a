"""Shared helpers for the stream tests: the IPV task, its batch reference, event builders."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
IPV_DIR = REPO / "tasks" / "ipv_feature"


def ev(user: str, eid: str, ts: int, page: str = "", **args: Any) -> dict[str, Any]:
    return {"user": user, "id": eid, "ts": ts, "page": page, "args": args}


@pytest.fixture(scope="session")
def ipv_batch() -> Any:
    spec = importlib.util.spec_from_file_location("ipv_batch_reference", IPV_DIR / "batch.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def synthetic_events() -> list[Any]:
    from walle_core.stream.source import load_source

    source = load_source("synthetic").from_options(
        {"users": "60", "minutes": "40", "seed": "3", "malformed": "0.01"})
    return list(source.events())
