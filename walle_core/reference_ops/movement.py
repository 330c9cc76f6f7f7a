"""Data movement: shape-only and copy ops (Transpose, Reshape, Slice, Concat, Split, Pad, ...).

The engine lowers these to Raster regions; these kernels are the definition those regions are
checked against. Attributes that became inputs (Split/Squeeze/Unsqueeze axes at 13, Pad pads
at 11, Slice starts/ends at 10) are handled by ``opset``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from walle_core.reference_ops._util import ints, norm_axes, norm_axis, opt_input
from walle_core.reference_ops.registry import register

Inputs = list[Any]
Attrs = dict[str, Any]


@register("Transpose")
def transpose(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    perm = attrs.get("perm") or list(range(x.ndim))[::-1]
    return [np.ascontiguousarray(np.transpose(x, perm))]


@register("Reshape")
def reshape(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    shape = ints(inputs[1]) if opset >= 5 else list(attrs["shape"])
    assert shape is not None
    if not attrs.get("allowzero", 0):
        # 0 copies the input dim at that position (unless allowzero).
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return [x.reshape(shape).copy()]


@register("Flatten")
def flatten(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    axis = norm_axis(attrs.get("axis", 1), x.ndim)
    return [x.reshape(int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:])))]


def _axes_arg(inputs: Inputs, attrs: Attrs, opset: int, since: int) -> list[int] | None:
    if opset >= since:
        return ints(opt_input(inputs, 1))
    return attrs.get("axes")


@register("Squeeze")
def squeeze(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    axes = _axes_arg(inputs, attrs, opset, 13)
    if axes is None:
        return [np.squeeze(x)]
    return [np.squeeze(x, axis=norm_axes(axes, x.ndim))]


@register("Unsqueeze")
def unsqueeze(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    axes = _axes_arg(inputs, attrs, opset, 13) or []
    out_rank = x.ndim + len(axes)
    return [np.expand_dims(x, norm_axes(axes, out_rank))]


@register("Concat")
def concat(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    xs = [x for x in inputs if x is not None]
    axis = norm_axis(attrs.get("axis", 0), xs[0].ndim)
    return [np.concatenate(xs, axis=axis)]


def split_sizes(length: int, n_out: int, split: list[int] | None, num: int | None) -> list[int]:
    if split:
        return split
    n = num or n_out
    # Uneven split: the first chunks get ceil(length / n), the last one the remainder.
    chunk = -(-length // n)
    sizes = [chunk] * (length // chunk) if chunk else [0] * n
    if chunk and length % chunk:
        sizes.append(length % chunk)
    return sizes + [0] * (n - len(sizes)) if len(sizes) < n else sizes


@register("Split")
def split(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    axis = norm_axis(attrs.get("axis", 0), x.ndim)
    sp = ints(opt_input(inputs, 1)) if opset >= 13 else attrs.get("split")
    n_out = attrs.get("num_outputs") or (len(sp) if sp else attrs.get("_n_outputs", 0))
    if not n_out and not sp:
        raise ValueError("Split: number of outputs unknown; pass attrs['_n_outputs']")
    sizes = split_sizes(x.shape[axis], n_out, sp, attrs.get("num_outputs"))
    offsets = np.cumsum([0, *sizes])
    return [np.take(x, range(offsets[i], offsets[i + 1]), axis=axis) for i in range(len(sizes))]


@register("Slice")
def slice_(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    if opset < 10:
        starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs.get("axes"), None
    else:
        starts, ends = ints(inputs[1]), ints(inputs[2])
        axes, steps = ints(opt_input(inputs, 3)), ints(opt_input(inputs, 4))
    assert starts is not None and ends is not None
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        a = norm_axis(a, x.ndim)
        n = x.shape[a]
        # Python slicing clamps like ONNX does, but huge negative ends must mean "before 0".
        if st < 0 and e < -n:
            e_opt: int | None = None
        else:
            e_opt = max(min(e, n), -n - 1) if e < 0 else min(e, n)
        index[a] = slice(max(min(s, n), -n), e_opt, st)
    return [x[tuple(index)].copy()]


@register("Tile")
def tile(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    return [np.tile(inputs[0], ints(inputs[1]) or [])]


@register("Expand")
def expand(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x, shape = inputs[0], ints(inputs[1])
    # Bidirectional broadcast: the output is broadcast(x.shape, shape).
    out = np.broadcast_shapes(x.shape, tuple(shape or ()))
    return [np.broadcast_to(x, out).copy()]


@register("Pad")
def pad(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    mode = attrs.get("mode", "constant")
    if opset < 11:
        pads = attrs.get("pads") or attrs.get("paddings")
        value, axes = attrs.get("value", 0.0), None
    else:
        pads = ints(inputs[1])
        v = opt_input(inputs, 2)
        value = v.reshape(-1)[0] if v is not None and v.size else 0
        axes = ints(opt_input(inputs, 3))
    assert pads is not None
    axes = list(range(x.ndim)) if axes is None else [norm_axis(a, x.ndim) for a in axes]
    k = len(axes)
    width = [(0, 0)] * x.ndim
    for i, a in enumerate(axes):
        width[a] = (pads[i], pads[i + k])
    # Negative pads crop: pad with the positive parts, then slice the negative parts off.
    pos = [(max(b, 0), max(e, 0)) for b, e in width]
    if mode == "constant":
        y = np.pad(x, pos, mode="constant", constant_values=value)
    else:
        np_mode: Any = {"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode]
        y = np.pad(x, pos, mode=np_mode)
    crop = tuple(slice(-min(b, 0), y.shape[i] + min(e, 0)) for i, (b, e) in enumerate(width))
    return [y[crop].astype(x.dtype, copy=False)]


@register("DepthToSpace")
def depth_to_space(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    b = attrs["blocksize"]
    n, c, h, w = x.shape
    if attrs.get("mode", "DCR") == "DCR":
        t = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        t = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return [t.reshape(n, c // (b * b), h * b, w * b)]


@register("SpaceToDepth")
def space_to_depth(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    b = attrs["blocksize"]
    n, c, h, w = x.shape
    t = x.reshape(n, c, h // b, b, w // b, b)
    if attrs.get("mode", "DCR") == "CRD":
        t = t.transpose(0, 1, 3, 5, 2, 4)
    else:
        t = t.transpose(0, 3, 5, 1, 2, 4)
    return [t.reshape(n, c * b * b, h // b, w // b)]


@register("Trilu")
def trilu(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    k_in = opt_input(inputs, 1)
    k = int(k_in.reshape(-1)[0]) if k_in is not None else 0
    return [np.triu(x, k) if attrs.get("upper", 1) else np.tril(x, k)]


@register("ReverseSequence")
def reverse_sequence(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x, lens = inputs[0], inputs[1]
    batch_axis, time_axis = attrs.get("batch_axis", 1), attrs.get("time_axis", 0)
    y = x.copy()
    for b, n in enumerate(lens):
        src: list[Any] = [slice(None)] * x.ndim
        src[batch_axis], src[time_axis] = b, slice(0, int(n))
        dst = list(src)
        dst[time_axis] = slice(int(n) - 1, None, -1) if n > 0 else slice(0, 0)
        y[tuple(dst)] = x[tuple(src)]
    return [y]


@register("Compress")
def compress(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x, cond = inputs[0], inputs[1].astype(bool)
    axis = attrs.get("axis")
    return [np.compress(cond, x, axis=axis if axis is None else norm_axis(axis, x.ndim))]


@register("Shape")
def shape(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    dims = np.array(inputs[0].shape, dtype=np.int64)
    start, end = attrs.get("start", 0), attrs.get("end")
    return [dims[start:end] if end is not None else dims[start:]]


@register("Size")
def size(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    return [np.array(inputs[0].size, dtype=np.int64)]


@register("NonZero")
def nonzero(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    return [np.array(np.nonzero(inputs[0]), dtype=np.int64).reshape(inputs[0].ndim, -1)]
