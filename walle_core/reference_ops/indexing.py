"""Index-driven ops: Gather*, Scatter*, TensorScatter, OneHot.

Negative indices count from the end of the indexed axis everywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from walle_core.reference_ops._util import norm_axis, opt_input
from walle_core.reference_ops.registry import register

Inputs = list[Any]
Attrs = dict[str, Any]


def _fix(idx: np.ndarray, n: Any) -> np.ndarray:
    idx = idx.astype(np.int64)
    return np.where(idx < 0, idx + n, idx)


@register("Gather")
def gather(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x, idx = inputs[0], inputs[1]
    axis = norm_axis(attrs.get("axis", 0), x.ndim)
    return [np.take(x, _fix(idx, x.shape[axis]), axis=axis)]


@register("GatherElements")
def gather_elements(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x, idx = inputs[0], inputs[1]
    axis = norm_axis(attrs.get("axis", 0), x.ndim)
    return [np.take_along_axis(x, _fix(idx, x.shape[axis]), axis=axis)]


@register("GatherND")
def gather_nd(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    # out[b..., i...] = data[b..., idx[b..., i..., :]] with b the first batch_dims dims.
    x, idx = inputs[0], inputs[1].astype(np.int64)
    bd = attrs.get("batch_dims", 0)
    k = idx.shape[-1]
    batch_shape = x.shape[:bd]
    nb = int(np.prod(batch_shape))
    xb = x.reshape(nb, *x.shape[bd:])
    ib = idx.reshape(nb, -1, k)
    out = []
    for b in range(nb):
        ii = _fix(ib[b], np.array(xb.shape[1:k + 1]))
        out.append(xb[b][tuple(ii.T)])
    res = np.stack(out) if out else np.zeros((0,), x.dtype)
    return [res.reshape(*idx.shape[:-1], *x.shape[bd + k:])]


_REDUCERS: dict[str, Any] = {
    "add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum,
}


@register("ScatterElements", "Scatter")
def scatter_elements(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x, idx, upd = inputs[0], inputs[1], inputs[2]
    axis = norm_axis(attrs.get("axis", 0), x.ndim)
    idx = _fix(idx, x.shape[axis])
    y = x.copy()
    red = attrs.get("reduction", "none")
    # Full coordinates of each update element, the axis coordinate replaced by the index.
    coords: list[Any] = list(np.indices(idx.shape, sparse=False))
    coords[axis] = idx
    key = tuple(coords)
    if red == "none":
        y[key] = upd
    else:
        _REDUCERS[red].at(y, key, upd)
    return [y]


@register("ScatterND")
def scatter_nd(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x, idx, upd = inputs[0], inputs[1].astype(np.int64), inputs[2]
    y = x.copy()
    k = idx.shape[-1]
    flat_idx = idx.reshape(-1, k)
    flat_upd = upd.reshape(flat_idx.shape[0], *x.shape[k:])
    red = attrs.get("reduction", "none")
    for i in range(flat_idx.shape[0]):
        key = tuple(_fix(flat_idx[i], np.array(x.shape[:k])))
        y[key] = flat_upd[i] if red == "none" else _REDUCERS[red](y[key], flat_upd[i])
    return [y]


@register("TensorScatter")
def tensor_scatter(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    # present[p, (w[b] + s) (mod L if circular), ...] = update[p, s, ...], b = p[0].
    past, upd = inputs[0], inputs[1]
    wi = opt_input(inputs, 2)
    axis = norm_axis(attrs.get("axis", -2), past.ndim)
    circular = attrs.get("mode", "linear") == "circular"
    y = past.copy()
    max_len, seq = past.shape[axis], upd.shape[axis]
    for prefix in np.ndindex(*past.shape[:axis]):
        start = int(wi[prefix[0]]) if wi is not None else 0
        for s in range(seq):
            pos = (start + s) % max_len if circular else start + s
            y[(*prefix, pos)] = upd[(*prefix, s)]
    return [y]


@register("OneHot")
def one_hot(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    idx, depth_t, values = inputs[0], inputs[1], inputs[2]
    depth = int(np.asarray(depth_t).reshape(-1)[0])
    idx = idx.astype(np.int64)
    idx = np.where(idx < 0, idx + depth, idx)
    axis = attrs.get("axis", -1)
    axis = axis + idx.ndim + 1 if axis < 0 else axis
    hot = np.expand_dims(idx, axis) == np.arange(depth).reshape(
        [depth if i == axis else 1 for i in range(idx.ndim + 1)])
    return [np.where(hot, values[1], values[0]).astype(values.dtype)]
