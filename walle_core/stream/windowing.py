"""Window bookkeeping for :class:`~walle_core.stream.operators.Pipeline`, one function per kind.

A key's state is a JSON value so that it round-trips through SQLite unchanged:

* no window: ``acc`` (a running aggregate; every event emits the new value);
* count: ``[n, acc]``; tumbling/sliding: ``{start: acc}`` (string keys); session:
  ``[start, last, acc]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from walle_core.stream.events import Event

if TYPE_CHECKING:
    from walle_core.stream.operators import Pipeline

Record = dict[str, Any]


def _record(pipe: Pipeline, key: str, start: int | None, end: int | None, acc: Any) -> Record:
    assert pipe.agg is not None
    return {"pipeline": pipe.name, "key": key, "start": start, "end": end,
            "value": pipe.agg.result(acc)}


def add_to_window(pipe: Pipeline, key: str, event: Event) -> list[Record]:
    from walle_core.stream.operators import CountWindow, Session, Sliding, Tumbling

    agg = pipe.agg
    assert agg is not None
    spec = pipe.window_spec
    state = pipe.state.get(key)
    ts = event["ts"]
    out: list[Record] = []
    if spec is None:
        acc = agg.add(agg.zero() if state is None else state, event)
        pipe.state.put(key, acc)
        return [_record(pipe, key, None, ts, acc)]
    if isinstance(spec, CountWindow):
        n, acc = state if state is not None else [0, agg.zero()]
        n, acc = n + 1, agg.add(acc, event)
        if n >= spec.size:
            out.append(_record(pipe, key, None, ts, acc))
            n, acc = 0, agg.zero()
        pipe.state.put(key, [n, acc])
        return out
    if isinstance(spec, Session):
        if state is not None and ts - state[1] > spec.gap_ms:
            out.append(_record(pipe, key, state[0], state[1] + spec.gap_ms, state[2]))
            state = None
        start, acc = (ts, agg.zero()) if state is None else (state[0], state[2])
        pipe.state.put(key, [start, max(ts, state[1]) if state else ts, agg.add(acc, event)])
        return out
    assert isinstance(spec, (Tumbling, Sliding))
    windows: dict[str, Any] = dict(state) if state is not None else {}
    for start_text in sorted(windows, key=int):
        if spec.end(int(start_text)) <= ts:
            out.append(_record(pipe, key, int(start_text), spec.end(int(start_text)),
                               windows.pop(start_text)))
    for start in spec.starts(ts):
        text = str(start)
        windows[text] = agg.add(windows.get(text, agg.zero()), event)
    pipe.state.put(key, windows)
    return out


def close_all(pipe: Pipeline) -> list[Record]:
    from walle_core.stream.operators import CountWindow, Session

    spec = pipe.window_spec
    out: list[Record] = []
    if spec is None or pipe.agg is None:
        return out
    for key in pipe.state.keys():
        state = pipe.state.get(key)
        if state is None:
            continue
        if isinstance(spec, CountWindow):
            if state[0]:
                out.append(_record(pipe, key, None, None, state[1]))
        elif isinstance(spec, Session):
            out.append(_record(pipe, key, state[0], state[1] + spec.gap_ms, state[2]))
        else:
            for start_text in sorted(state, key=int):
                start = int(start_text)
                out.append(_record(pipe, key, start, spec.end(start), state[start_text]))
        pipe.state.delete(key)
    return out
