from __future__ import annotations

from collections import Counter

import pytest
from walle_source_synthetic import SyntheticSource

from walle_core.stream.events import check_event
from walle_core.stream.source import SourceError, load_source


def test_registered_under_walle_sources() -> None:
    assert load_source("synthetic") is SyntheticSource


def test_seeded_and_resumable() -> None:
    a = list(SyntheticSource(users=10, minutes=10, seed=1).events())
    assert a == list(SyntheticSource(users=10, minutes=10, seed=1).events())
    assert a != list(SyntheticSource(users=10, minutes=10, seed=2).events())
    assert list(SyntheticSource(users=10, minutes=10, seed=1).events(start=123)) == a[123:]


def test_valid_time_ordered_and_covers_the_behaviours() -> None:
    events = list(SyntheticSource(users=30, minutes=30).events())
    assert all(check_event(e) is None for e in events)
    stamps = [e["ts"] for e in events]
    assert stamps == sorted(stamps)
    ids = Counter(e["id"] for e in events)
    for eid in ("page_enter", "page_exit", "scroll", "exposure", "click", "favorite",
                "add_cart", "buy"):
        assert ids[eid] > 0, eid
    assert len({e["user"] for e in events}) == 30


def test_every_visit_is_closed_before_the_next() -> None:
    open_page: dict[str, str | None] = {}
    for e in SyntheticSource(users=20, minutes=20).events():
        if e["id"] == "page_enter":
            assert open_page.get(e["user"]) is None
            open_page[e["user"]] = e["page"]
        elif e["id"] == "page_exit":
            assert open_page.get(e["user"]) == e["page"]
            open_page[e["user"]] = None


def test_malformed_fraction() -> None:
    events = list(SyntheticSource(users=20, minutes=20, malformed=0.05).events())
    bad = sum(check_event(e) is not None for e in events)
    assert 0.02 * len(events) < bad < 0.08 * len(events)


def test_bad_options() -> None:
    with pytest.raises(SourceError):
        SyntheticSource.from_options({"users": "0"})
    with pytest.raises(SourceError, match="--users"):
        SyntheticSource.from_options({"users": "many"})
