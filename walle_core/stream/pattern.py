"""Trigger patterns: the small language in which a stream task says *when* it runs.

A pattern is a whitespace-separated sequence of steps over the event ids of one key (user)::

    page_enter[page=item_detail] ** page_exit[page=item_detail]

* ``click`` an exact id; ``page_*`` a glob over ids; ``*`` any one event.
* ``[field=value, args.k!=v]`` predicates on the event (``page``, ``user``, ``args.<name>``).
* ``+`` one or more, ``?`` optional, ``{m}``, ``{m,n}``, ``{m,}`` repetition.
* ``**`` a gap: skip any events until the next step matches (skip-till-next-match).
* ``[args.item_id=$item]`` a variable: its first use in a match binds it to the event's value (the
  field must be present), later uses compare against it (``=$item`` equal, ``!=$item`` different).
  A match carries its bindings, so ``page_enter[args.item_id=$i] ** page_exit[args.item_id=$i]``
  pairs an exit only with the enter of the same item, and visits of different items interleave.

Steps are otherwise strictly contiguous in the key's own event sequence. A trigger adds a time
limit for the whole match (``within``) and optionally "not followed by X within T". Patterns are
expanded here into linear *variants* of :class:`Element` (optional and bounded repetition become
alternatives), which is the form the trie (:mod:`walle_core.stream.trie`) merges.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Predicate = Callable[[dict[str, Any]], bool]
MAX_VARIANTS = 256
_UNBOUNDED = -1

_STEP_RE = re.compile(
    r"^(?P<name>[A-Za-z0-9_.:*\-]+)(?:\[(?P<preds>[^\]]*)\])?"
    r"(?P<quant>\+|\?|\{\d+\}|\{\d+,\d*\})?$"
)
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1}


class PatternError(ValueError):
    """A trigger pattern that cannot be parsed; the message names the bad step."""


def parse_duration_ms(value: str | int | float | None) -> int | None:
    """``"30s"``, ``"2h"``, ``1500`` (ms) → milliseconds; ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value)
    match = _DURATION_RE.match(value)
    if not match:
        raise PatternError(f"bad duration {value!r}: use e.g. 1500, '1500ms', '30s', '5m', '2h'")
    return int(float(match.group(1)) * _UNIT_MS[match.group(2)])


@dataclass(frozen=True)
class Atom:
    """Matches one event: an id (exact, glob or any) plus optional field predicates."""

    name: str
    preds: tuple[tuple[str, str, str], ...] = ()

    @property
    def key(self) -> str:
        if not self.preds:
            return self.name
        return self.name + "[" + ",".join(f"{f}{op}{v}" for f, op, v in self.preds) + "]"

    @property
    def is_exact(self) -> bool:
        return "*" not in self.name

    def matches_id(self, eid: str) -> bool:
        if self.name == "*":
            return True
        if self.is_exact:
            return eid == self.name
        return fnmatch.fnmatchcase(eid, self.name)

    def predicate(self) -> Predicate | None:
        """A compiled check of the predicates, or ``None`` when there are none."""
        if not self.preds:
            return None
        checks = [_compile_pred(f, op, v) for f, op, v in self.preds]
        if len(checks) == 1:
            return checks[0]
        return lambda event: all(check(event) for check in checks)

    def specialise(self, eid: str, page: Any) -> tuple[bool, Predicate | None]:
        """Decide what an event's id and page alone decide; the rest is left as a predicate.

        Returns ``(False, None)`` when no event with this id and page can match, ``(True, None)``
        when every such event matches, and ``(True, check)`` when ``check(event)`` (predicates on
        ``user`` or ``args``) must still run. The trie caches this per (id, page) pair, so the hot
        path calls no predicate at all for the usual ``[page=...]`` patterns.
        """
        ok, rest = self.residual(eid, page)
        return ok, compile_preds(rest) if ok else None

    def residual(self, eid: str, page: Any) -> tuple[bool, tuple[tuple[str, str, str], ...]]:
        """Like :meth:`specialise`, but the predicates left to check are returned uncompiled."""
        if not self.matches_id(eid):
            return False, ()
        rest = []
        for name, op, value in self.preds:
            if name in ("id", "page") and not value.startswith("$"):
                if ((eid if name == "id" else page) == value) != (op == "="):
                    return False, ()
            else:
                rest.append((name, op, value))
        return True, tuple(rest)

    def matches(self, event: dict[str, Any]) -> bool:
        return self.matcher()(event)

    def matcher(self) -> Predicate:
        """A compiled check of id and predicates together."""
        pred = self.predicate()
        if self.is_exact:
            name = self.name
            if pred is None:
                return lambda event: event["id"] == name
            return lambda event: event["id"] == name and pred(event)
        return lambda event: self.matches_id(event["id"]) and (pred is None or pred(event))


def variables(preds: tuple[tuple[str, str, str], ...]) -> list[tuple[str, str, str]]:
    """The ``(field, op, name)`` of each predicate that uses a variable (``field=$name``)."""
    return [(f, op, v[1:]) for f, op, v in preds if v.startswith("$")]


def field_getter(field: str) -> Callable[[dict[str, Any]], Any]:
    """Read ``field`` (``page``, ``user``, ``id``, ``args.<name>``); ``None`` when absent."""
    if field.startswith("args."):
        arg = field[5:]
        return lambda event: event["args"].get(arg)
    return lambda event: event.get(field)


def compile_check(preds: tuple[tuple[str, str, str], ...],
                  target: Any) -> Callable[[dict[str, Any]], Any] | None:
    """A check that returns ``target`` when ``event`` passes all of ``preds``, else ``None``.

    This is the form the trie's edges take (``None`` when nothing is left to check); edges that
    bind a variable return a target that depends on the event instead.
    """
    if not preds:
        return None
    if len(preds) == 1 and preds[0][1] in ("=", "!="):
        field, op, value = preds[0]
        if field in ("page", "user", "id"):
            if op == "=":
                return lambda event: target if event[field] == value else None
            return lambda event: target if event[field] != value else None
        if field.startswith("args."):
            arg = field[5:]
            if op == "=":
                return lambda event: target if str(event["args"].get(arg)) == value else None
            return lambda event: target if str(event["args"].get(arg)) != value else None
    pred = compile_preds(preds)
    assert pred is not None
    return lambda event: target if pred(event) else None


def compile_preds(preds: tuple[tuple[str, str, str], ...]) -> Predicate | None:
    """One check for all of ``preds`` (``None`` when there are none)."""
    if not preds:
        return None
    checks = [_compile_pred(f, op, v) for f, op, v in preds]
    if len(checks) == 1:
        return checks[0]
    return lambda event: all(check(event) for check in checks)


def _compile_pred(field: str, op: str, value: str) -> Predicate:
    if op in ("=$", "!=$"):  # against a bound variable's value: an absent field never equals
        get_value = field_getter(field)
        if op == "=$":
            return lambda event: (found := get_value(event)) is not None and str(found) == value
        return lambda event: (found := get_value(event)) is None or str(found) != value
    if field in ("page", "user", "id"):  # validated strings: compare directly (hot path)
        if op == "=":
            return lambda event: event[field] == value
        return lambda event: event[field] != value
    if field.startswith("args."):
        arg = field[5:]

        def get(event: dict[str, Any]) -> Any:
            return event["args"].get(arg)
    else:

        def get(event: dict[str, Any]) -> Any:
            return event.get(field)

    if op == "=":
        return lambda event: str(get(event)) == value
    return lambda event: str(get(event)) != value


def parse_atom(text: str) -> Atom:
    """Parse ``name[preds]`` (no quantifier)."""
    match = _STEP_RE.match(text)
    if not match or match.group("quant"):
        raise PatternError(f"bad event matcher {text!r}")
    return Atom(match.group("name"), _parse_preds(match.group("preds"), text))


def _parse_preds(body: str | None, step: str) -> tuple[tuple[str, str, str], ...]:
    if not body:
        return ()
    preds = []
    for part in body.split(","):
        m = re.match(r"^\s*([A-Za-z_][\w.]*)\s*(!=|=)\s*(.*?)\s*$", part)
        if not m:
            raise PatternError(f"bad predicate {part!r} in step {step!r}")
        if m.group(3).startswith("$") and not re.fullmatch(r"\$[A-Za-z_]\w*", m.group(3)):
            raise PatternError(f"bad variable {m.group(3)!r} in step {step!r}: use $name")
        preds.append((m.group(1), m.group(2), m.group(3)))
    return tuple(preds)


@dataclass(frozen=True)
class Step:
    """One parsed step: an atom repeated ``low..high`` times, maybe after a gap."""

    atom: Atom
    low: int = 1
    high: int = 1  # _UNBOUNDED for "+" / "{m,}"
    gap: bool = False


@dataclass(frozen=True)
class Element:
    """One linear element of an expanded variant: the unit the trie stores."""

    atom: Atom
    gap: bool = False  # reached by skipping until ``atom`` matches
    loop: bool = False  # may repeat itself (the tail of "+" / "{m,}")

    @property
    def key(self) -> str:
        return (".." if self.gap else "") + self.atom.key + ("+" if self.loop else "")


def parse_pattern(text: str) -> list[Step]:
    """Parse pattern text into steps; raise :class:`PatternError` naming the bad step."""
    steps: list[Step] = []
    gap = False
    tokens = text.split()
    if not tokens:
        raise PatternError("empty pattern")
    for token in tokens:
        if token == "**":
            gap = bool(steps)  # a leading gap means nothing: every match may start anywhere
            continue
        match = _STEP_RE.match(token)
        if not match:
            raise PatternError(f"bad step {token!r} in pattern {text!r}")
        low, high = _quantifier(match.group("quant"))
        atom = Atom(match.group("name"), _parse_preds(match.group("preds"), token))
        steps.append(Step(atom, low, high, gap))
        gap = False
    if tokens[-1] == "**":
        raise PatternError(f"pattern {text!r} ends with a gap '**': nothing to wait for")
    if all(s.low == 0 for s in steps):
        raise PatternError(f"pattern {text!r} can match no events at all")
    return steps


def _quantifier(quant: str | None) -> tuple[int, int]:
    if quant is None:
        return 1, 1
    if quant == "+":
        return 1, _UNBOUNDED
    if quant == "?":
        return 0, 1
    body = quant[1:-1]
    if "," not in body:
        return int(body), int(body)
    low_text, high_text = body.split(",")
    low = int(low_text)
    high = int(high_text) if high_text else _UNBOUNDED
    if high != _UNBOUNDED and high < low:
        raise PatternError(f"bad repetition {quant}: upper bound below lower bound")
    return low, high


def _step_choices(step: Step) -> list[list[Element]]:
    """Each way one step can expand into elements (the first carries the step's gap)."""
    if step.high == _UNBOUNDED:
        counts: list[tuple[int, bool]] = [(max(step.low, 1), True)]
        if step.low == 0:
            counts.insert(0, (0, False))
    else:
        counts = [(n, False) for n in range(step.low, step.high + 1)]
    choices = []
    for n, loops in counts:
        elems = [Element(step.atom, gap=False, loop=False) for _ in range(n)]
        if loops:
            elems[-1] = Element(step.atom, loop=True)
        choices.append(elems)
    return choices


def expand(steps: list[Step]) -> list[tuple[Element, ...]]:
    """All linear variants of a parsed pattern (capped at :data:`MAX_VARIANTS`)."""
    per_step = [_step_choices(step) for step in steps]
    variants: list[tuple[Element, ...]] = []
    for combo in itertools.product(*per_step):
        out: list[Element] = []
        gap = False
        for step, elems in zip(steps, combo, strict=True):
            gap = gap or step.gap
            if elems:
                first = elems[0]
                out.append(Element(first.atom, gap=gap and bool(out), loop=first.loop))
                out.extend(elems[1:])
                gap = False
        if out and tuple(out) not in variants:
            variants.append(tuple(out))
        if len(variants) > MAX_VARIANTS:
            raise PatternError(f"pattern expands into more than {MAX_VARIANTS} alternatives")
    return variants


@dataclass(frozen=True)
class Trigger:
    """A task's trigger: pattern, time limit, and an optional "not followed by X within T"."""

    pattern: str
    within_ms: int | None = None
    not_followed_by: str | None = None
    not_within_ms: int | None = None

    def __post_init__(self) -> None:
        parse_pattern(self.pattern)
        if (self.not_followed_by is None) != (self.not_within_ms is None):
            raise PatternError("'not_followed_by' and 'not_within' must be given together")
        if self.not_followed_by is not None:
            if variables(parse_atom(self.not_followed_by).preds):
                raise PatternError("'not_followed_by' cannot use variables ($name)")
        for variant in self.variants():
            bound: set[str] = set()
            for element in variant:
                used = variables(element.atom.preds)
                for field, op, name in used:
                    if op == "!=" and name not in bound:
                        raise PatternError(f"{field}!=${name} in pattern {self.pattern!r}: "
                                           f"${name} is not bound by an earlier step")
                bound.update(name for _, op, name in used if op == "=")

    def variants(self) -> list[tuple[Element, ...]]:
        return expand(parse_pattern(self.pattern))

    def negation(self) -> Atom | None:
        return None if self.not_followed_by is None else parse_atom(self.not_followed_by)
