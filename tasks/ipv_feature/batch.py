"""The IPV features computed as a plain batch job over a whole event log (pandas).

This is the reference the stream runtime is checked against: same definition, no trie, no state.
A visit is a ``page_enter`` on ``item_detail`` whose next item-detail ``page_enter``/``page_exit``
event (of the same user, in log order) is a ``page_exit``, and which lasts at most ``within_ms``.
Counts are over the user's events strictly between the two.
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
    on_detail = (df["page"] == "item_detail") & df["id"].isin(["page_enter", "page_exit"])
    marks = df[on_detail]
    nxt = marks.groupby("user")["id"].shift(-1)
    nxt_idx = pd.Series(marks.index, index=marks.index).groupby(marks["user"]).shift(-1)
    enters = marks[(marks["id"] == "page_enter") & (nxt == "page_exit")]
    visits = pd.DataFrame({"user": enters["user"].to_numpy(),
                           "item_id": enters["item_id"].to_numpy(),
                           "enter_row": enters.index.to_numpy(),
                           "exit_row": nxt_idx[enters.index].astype(int).to_numpy()})
    visits["enter_ts"] = df["ts"].to_numpy()[visits["enter_row"]]
    visits["exit_ts"] = df["ts"].to_numpy()[visits["exit_row"]]
    visits["dwell_ms"] = visits["exit_ts"] - visits["enter_ts"]
    visits = visits[visits["dwell_ms"] <= within_ms].reset_index(drop=True)
    # Attribute each row to the visit whose enter row precedes it (rows are grouped by user).
    df["visit"] = pd.Series(pd.NA, index=df.index, dtype="Int64")
    df.loc[visits["enter_row"], "visit"] = range(len(visits))
    df["visit"] = df.groupby("user")["visit"].ffill()
    inside = df[df["visit"].notna()].copy()
    rows = inside.index.to_numpy()
    v = inside["visit"].astype(int).to_numpy()
    keep = (rows > visits["enter_row"].to_numpy()[v]) & (rows < visits["exit_row"].to_numpy()[v])
    inside = inside[keep & inside["id"].isin(COUNTED).to_numpy()]
    counts = inside.groupby(["visit", "id"]).size().unstack(fill_value=0)
    counts = counts.reindex(index=range(len(visits)), columns=list(COUNTED), fill_value=0)
    out = pd.concat([visits.drop(columns=["enter_row", "exit_row"]), counts.reset_index(drop=True)],
                    axis=1)
    return out[COLUMNS].sort_values(["user", "enter_ts"]).reset_index(drop=True)
