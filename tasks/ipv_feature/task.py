"""IPV feature task: turn each item-detail visit into one compact feature record.

The trigger hands over the visit's window (the user's events from ``page_enter`` to the matching
``page_exit``); this script only counts. Raw events stay on the device; the record is what gets
uploaded, which is where the bandwidth saving comes from.
"""

from __future__ import annotations

from typing import Any

COUNTED = ("favorite", "add_cart", "buy", "scroll", "exposure", "click")


def on_match(match: Any) -> list[dict[str, Any]]:
    """One record per visit: dwell time and how often each interesting event happened inside."""
    events = match.events
    enter, exit_ = events[0], events[-1]
    counts = dict.fromkeys(COUNTED, 0)
    for event in events[1:-1]:
        eid = event["id"]
        if eid in counts:
            counts[eid] += 1
    return [{"user": match.key, "item_id": enter["args"].get("item_id"),
             "enter_ts": enter["ts"], "exit_ts": exit_["ts"],
             "dwell_ms": exit_["ts"] - enter["ts"], **counts}]
