"""The IPV features computed as a plain batch job over a whole event log (pandas).

This is the reference the stream runtime is checked against: same definition, no trie, no state.
A visit is a ``page_enter`` on ``item_detail`` with an ``args.item_id`` whose next item-detail
``page_enter``/``page_exit`` event *of the same user and item* (in log order) is a ``page_exit``,
and which lasts at most ``within_ms``; an exit of another item does not close it, so visits of
different items may interleave or nest. Counts are over the user's events strictly between the two
(whichever visit they also fall in).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

COUNTED = ("favorite", "add_cart", "buy", "scroll", "exposure", "click")
COLUMNS = ["user", "item_id", "enter_ts", "exit_ts", "dwell_ms", *COUNTED]


def ipv_features(events: Iterable[dict[str, Any]], within_ms: int = 2 * 3_600_000) -> pd.DataFrame:
    """Features of every visit in ``events`` (valid events only, in log order)."""
    df = pd.DataFrame.from_records(
        [(e["user"], e["id"], e["ts"], e["page"], e["args"].get("item_id")) for e in events],
        columns=["user", "id", "ts", "page", "item_id"])
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    df["pos"] = range(len(df))
    df = df.sort_values(["user", "pos"], kind="stable").reset_index(drop=True)
    on_detail = ((df["page"] == "item_detail") & df["id"].isin(["page_enter", "page_exit"])
                 & df["item_id"].notna())
    marks = df[on_detail]
    by_visit = [marks["user"], marks["item_id"].astype(str)]
    nxt = marks.groupby(by_visit)["id"].shift(-1)
    nxt_idx = pd.Series(marks.index, index=marks.index).groupby(by_visit).shift(-1)
    enters = marks[(marks["id"] == "page_enter") & (nxt == "page_exit")]
    visits = pd.DataFrame({"user": enters["user"].to_numpy(),
                           "item_id": enters["item_id"].to_numpy(),
                           "enter_row": enters.index.to_numpy(),
                           "exit_row": nxt_idx[enters.index].astype(int).to_numpy()})
    visits["enter_ts"] = df["ts"].to_numpy()[visits["enter_row"]]
    visits["exit_ts"] = df["ts"].to_numpy()[visits["exit_row"]]
    visits["dwell_ms"] = visits["exit_ts"] - visits["enter_ts"]
    visits = visits[visits["dwell_ms"] <= within_ms].reset_index(drop=True)
    # Rows are grouped by user, so a visit's counts are differences of running totals.
    enter_rows = visits["enter_row"].to_numpy()
    exit_rows = visits["exit_row"].to_numpy()
    for eid in COUNTED:
        running = (df["id"] == eid).cumsum().to_numpy()
        visits[eid] = running[exit_rows - 1] - running[enter_rows]
    return visits[COLUMNS].sort_values(["user", "enter_ts"]).reset_index(drop=True)
