from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from walle_source_replay import ReplaySource

from walle_core.stream.source import SourceError, load_source


def log(tmp_path: Path, n: int = 20) -> Path:
    path = tmp_path / "e.jsonl"
    lines = [json.dumps({"user": "u", "id": "click", "ts": i, "page": "", "args": {}})
             for i in range(n)]
    path.write_text("\n".join(lines[:5]) + "\n\n{broken\n" + "\n".join(lines[5:]) + "\n")
    return path


def test_registered_under_walle_sources() -> None:
    assert load_source("replay") is ReplaySource


def test_jsonl_lines_blank_skipped_bad_kept(tmp_path: Path) -> None:
    records = list(ReplaySource(log(tmp_path)).events())
    assert len(records) == 21 and "{broken" in records


def test_resume_offset(tmp_path: Path) -> None:
    source = ReplaySource(log(tmp_path))
    everything = list(source.events())
    assert list(source.events(start=7)) == everything[7:]
    assert list(source.events(start=100)) == []


def test_csv(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text('user,id,ts,page,args\nu,click,5,home,"{""item_id"": ""i1""}"\n'
                    "u,click,x,home,{}\n")
    good, bad = list(ReplaySource(path).events())
    assert good == {"user": "u", "id": "click", "ts": 5, "page": "home",
                    "args": {"item_id": "i1"}}
    assert bad["ts"] == "x"  # left for the runtime to reject


def test_rate_limits_delivery(tmp_path: Path) -> None:
    began = time.perf_counter()
    assert len(list(ReplaySource(log(tmp_path), rate=200).events())) == 21
    assert time.perf_counter() - began >= 0.09


def test_options(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="needs --path"):
        ReplaySource.from_options({})
    with pytest.raises(SourceError, match="does not exist"):
        ReplaySource.from_options({"path": str(tmp_path / "missing.jsonl")})
    source = ReplaySource.from_options({"path": str(log(tmp_path)), "rate": "5"})
    assert isinstance(source, ReplaySource) and source.rate == 5.0
