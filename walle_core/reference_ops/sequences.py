"""Sequence and optional ops, and string ops.

A sequence value is a Python list of arrays; an empty optional is ``None``. String tensors are
numpy object arrays of ``str``.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from walle_core.reference_ops._util import norm_axis, opt_input
from walle_core.reference_ops.movement import split_sizes
from walle_core.reference_ops.registry import register

Inputs = list[Any]
Attrs = dict[str, Any]


def _pos(p: Any, n: int) -> int:
    i = int(np.asarray(p).reshape(-1)[0])
    return i + n if i < 0 else i


@register("SequenceConstruct")
def sequence_construct(inputs: Inputs, attrs: Attrs, opset: int) -> list[Any]:
    return [[x.copy() for x in inputs]]


@register("SequenceEmpty")
def sequence_empty(inputs: Inputs, attrs: Attrs, opset: int) -> list[Any]:
    return [[]]


@register("SequenceAt")
def sequence_at(inputs: Inputs, attrs: Attrs, opset: int) -> list[Any]:
    seq = inputs[0]
    return [seq[_pos(inputs[1], len(seq))]]


@register("SequenceInsert")
def sequence_insert(inputs: Inputs, attrs: Attrs, opset: int) -> list[Any]:
    seq, x, p = list(inputs[0]), inputs[1], opt_input(inputs, 2)
    seq.insert(len(seq) if p is None else _pos(p, len(seq)), x)
    return [seq]


@register("SequenceErase")
def sequence_erase(inputs: Inputs, attrs: Attrs, opset: int) -> list[Any]:
    seq, p = list(inputs[0]), opt_input(inputs, 1)
    del seq[len(seq) - 1 if p is None else _pos(p, len(seq))]
    return [seq]


@register("SequenceLength")
def sequence_length(inputs: Inputs, attrs: Attrs, opset: int) -> list[Any]:
    return [np.array(len(inputs[0]), dtype=np.int64)]


@register("SplitToSequence")
def split_to_sequence(inputs: Inputs, attrs: Attrs, opset: int) -> list[Any]:
    x, sp = inputs[0], opt_input(inputs, 1)
    axis = norm_axis(attrs.get("axis", 0), x.ndim)
    n = x.shape[axis]
    if sp is None:  # one element per index; keepdims decides whether the axis stays
        parts = [np.take(x, [i], axis=axis) for i in range(n)]
        if not attrs.get("keepdims", 1):
            parts = [np.squeeze(p, axis=axis) for p in parts]
        return [parts]
    if sp.ndim == 0:  # chunks of size sp, the last one smaller
        size = int(sp)
        sizes = [size] * (n // size) + ([n % size] if n % size else [])
    else:
        sizes = split_sizes(n, len(sp), [int(v) for v in sp], None)
    offsets = np.cumsum([0, *sizes])
    return [[np.take(x, range(offsets[i], offsets[i + 1]), axis=axis)
             for i in range(len(sizes))]]


@register("ConcatFromSequence")
def concat_from_sequence(inputs: Inputs, attrs: Attrs, opset: int) -> list[Any]:
    seq = inputs[0]
    axis = attrs["axis"]
    if attrs.get("new_axis", 0):
        return [np.stack(seq, axis=norm_axis(axis, seq[0].ndim + 1))]
    return [np.concatenate(seq, axis=norm_axis(axis, seq[0].ndim))]


@register("Optional")
def optional(inputs: Inputs, attrs: Attrs, opset: int) -> list[Any]:
    return [opt_input(inputs, 0)]


@register("OptionalHasElement")
def optional_has_element(inputs: Inputs, attrs: Attrs, opset: int) -> list[Any]:
    return [np.array(opt_input(inputs, 0) is not None)]


@register("OptionalGetElement")
def optional_get_element(inputs: Inputs, attrs: Attrs, opset: int) -> list[Any]:
    x = inputs[0]
    if x is None:
        raise ValueError("OptionalGetElement: the optional is empty")
    return [x]


@register("StringConcat")
def string_concat(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    a, b = np.broadcast_arrays(inputs[0], inputs[1])
    out = np.empty(a.shape, dtype=object)
    for idx in np.ndindex(a.shape):
        out[idx] = str(a[idx]) + str(b[idx])
    return [out]


@register("StringSplit")
def string_split(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    delim = attrs.get("delimiter") or None  # None: split on runs of whitespace
    maxsplit = attrs.get("maxsplit", -1)
    parts = [str(s).split(delim, maxsplit) if str(s) or delim else [] for s in x.reshape(-1)]
    if delim is None:
        parts = [str(s).split(None, maxsplit) for s in x.reshape(-1)]
    width = max((len(p) for p in parts), default=0)
    out = np.full((len(parts), width), "", dtype=object)
    for i, p in enumerate(parts):
        out[i, : len(p)] = p
    counts = np.array([len(p) for p in parts], dtype=np.int64).reshape(x.shape)
    return [out.reshape(*x.shape, width), counts]


@register("StringNormalizer")
def string_normalizer(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    stop = attrs.get("stopwords", [])
    case_sensitive = attrs.get("is_case_sensitive", 0)
    words = [str(s) for s in x.reshape(-1)]
    if stop:
        stops = set(stop) if case_sensitive else {s.lower() for s in stop}
        words = [w for w in words if (w if case_sensitive else w.lower()) not in stops]
    action = attrs.get("case_change_action", "NONE")
    if action == "LOWER":
        words = [w.lower() for w in words]
    elif action == "UPPER":
        words = [w.upper() for w in words]
    if not words:
        words = [""]
    y = np.array(words, dtype=object)
    return [y.reshape(1, -1) if x.ndim == 2 else y]


@register("RegexFullMatch")
def regex_full_match(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    pattern = re.compile(attrs["pattern"])
    x = inputs[0]
    flat = [pattern.fullmatch(str(s)) is not None for s in x.reshape(-1)]
    return [np.array(flat, dtype=bool).reshape(x.shape)]
