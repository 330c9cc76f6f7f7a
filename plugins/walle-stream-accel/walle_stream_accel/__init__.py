"""C implementation of :meth:`walle_core.stream.triggers.TriggerEngine.advance`.

Found by the core through the ``walle.stream_accel`` entry point. It is the same algorithm as the
pure-Python ``advance`` (which stays the fallback and the oracle: the differential tests compare
both against :mod:`walle_core.stream.reference`), working on the engine's own Python state (key
states, cursor dicts, trie nodes, ``Match`` objects), so snapshots, restore and replace are
unchanged. Rare paths (new event classes, transitions, expiry, negation, trimming, de-duplication)
call back into the engine's Python methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from walle_stream_accel import _advance

_READY = False


def make_advance(engine: Any) -> Callable[[dict[str, Any]], Any]:
    """A callable ``advance(event)`` bound to ``engine`` (a ``TriggerEngine``)."""
    global _READY
    if not _READY:
        from walle_core.stream import trie, triggers

        _advance.setup(trie.Node, trie.EventClass, triggers.KeyState, triggers.Match,
                       triggers._Pending, triggers._TRIM_AT)
        _READY = True
    return _advance.bind(engine)
