"""What the runners need to bind a step to its buffers (``walle_core.backend.CompiledStep``):
views resolved once per plan, never copies a bound call would then use on every run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Run = Callable[[list[Any], list[Any]], None]
Bind = Callable[[list[Any], list[Any]], Callable[[], None] | None]


def views(*pairs: tuple[Any, tuple[int, ...]]) -> list[Any] | None:
    """Each array reshaped, or None when a reshape would copy (a bound call would then read or
    write a stale copy on every run)."""
    out = []
    for a, shape in pairs:
        v = a.reshape(shape)
        if v.size and not np.shares_memory(v, a):
            return None
        out.append(v)
    return out


def flat_views(buffers: Sequence[Any]) -> list[Any] | None:
    """1-D views of ``buffers`` (None stays None), or None when one would be a copy."""
    flat = views(*((a, (-1,)) for a in buffers if a is not None))
    if flat is None:
        return None
    it = iter(flat)
    return [None if a is None else next(it) for a in buffers]


def with_bind(run: Run, bind: Bind) -> Run:
    """``run`` with its ``bind``."""
    run.bind = bind  # type: ignore[attr-defined]
    return run
