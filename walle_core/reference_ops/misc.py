"""Assorted ops: Dropout, TopK, Unique, BitCast, NonMaxSuppression, CenterCropPad.

Unique and TopK follow ONNX's tie rules: TopK keeps the lower index first among equal values;
Unique with sorted=0 keeps first-occurrence order.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from walle_core.reference_ops._util import norm_axis, np_dtype, opt_input
from walle_core.reference_ops.registry import register

Inputs = list[Any]
Attrs = dict[str, Any]


@register("Dropout")
def dropout(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    # Inference (or ratio 0): y = x, mask all True. Training: y = mask * x / (1 - ratio).
    x = inputs[0]
    ratio_in, training_in = opt_input(inputs, 1), opt_input(inputs, 2)
    ratio = float(ratio_in) if ratio_in is not None else attrs.get("ratio", 0.5)
    training = bool(training_in) if training_in is not None else False
    if not training or ratio == 0:
        return [x.copy(), np.ones(x.shape, dtype=bool)]
    seed = attrs.get("seed")
    keep = np.random.default_rng(seed).uniform(size=x.shape) >= ratio
    return [(x * keep / (1 - ratio)).astype(x.dtype), keep]


@register("TopK")
def topk(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    k = int(np.asarray(inputs[1]).reshape(-1)[0]) if opset >= 10 else attrs["k"]
    axis = norm_axis(attrs.get("axis", -1), x.ndim)
    largest = attrs.get("largest", 1)
    # Stable sort on the (negated) values keeps lower indices first among ties.
    key = -x.astype(np.float64) if largest and x.dtype.kind != "u" else x.astype(np.float64)
    if largest and x.dtype.kind == "u":
        key = -x.astype(np.float64)
    order = np.argsort(key, axis=axis, kind="stable")
    idx = np.take(order, range(k), axis=axis)
    return [np.take_along_axis(x, idx, axis=axis), idx.astype(np.int64)]


@register("Unique")
def unique(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    axis = attrs.get("axis")
    if axis is None:
        _, first, inverse, counts = np.unique(x.reshape(-1), return_index=True,
                                              return_inverse=True, return_counts=True)
        values_src = x.reshape(-1)
        take_axis = 0
    else:
        take_axis = norm_axis(axis, x.ndim)
        _, first, inverse, counts = np.unique(x, axis=take_axis, return_index=True,
                                              return_inverse=True, return_counts=True)
        values_src = x
    inverse = inverse.reshape(-1)
    if not attrs.get("sorted", 1):
        # Re-order the unique entries by first occurrence.
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        first, counts, inverse = first[order], counts[order], rank[inverse]
    y = np.take(values_src, first, axis=take_axis)
    return [y, first.astype(np.int64), inverse.astype(np.int64), counts.astype(np.int64)]


@register("BitCast")
def bitcast(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = np.array(inputs[0], copy=True, order="C")
    dt = np_dtype(attrs["to"])
    return [x.view(dt).reshape(x.shape)]


def _iou(a: np.ndarray, b: np.ndarray, center: bool) -> float:
    if center:  # [x_c, y_c, w, h] -> corners
        a = np.array([a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2])
        b = np.array([b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2])
    else:  # [y1, x1, y2, x2], corners in any order
        a = np.array([min(a[1], a[3]), min(a[0], a[2]), max(a[1], a[3]), max(a[0], a[2])])
        b = np.array([min(b[1], b[3]), min(b[0], b[2]), max(b[1], b[3]), max(b[0], b[2])])
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@register("NonMaxSuppression")
def non_max_suppression(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    # Per (batch, class): greedily keep the best-scoring box above the score threshold and
    # drop every remaining box whose IoU with it exceeds the IoU threshold.
    boxes, scores = inputs[0], inputs[1]
    mo, iou_t, score_t = (opt_input(inputs, i) for i in (2, 3, 4))
    max_out = int(mo.reshape(-1)[0]) if mo is not None and mo.size else 0
    iou_thr = float(iou_t.reshape(-1)[0]) if iou_t is not None and iou_t.size else 0.0
    center = attrs.get("center_point_box", 0) == 1
    picked: list[list[int]] = []
    for b in range(scores.shape[0]):
        for c in range(scores.shape[1]):
            sc = scores[b, c]
            cand = [i for i in np.argsort(-sc, kind="stable")
                    if score_t is None or sc[i] > float(score_t.reshape(-1)[0])]
            kept: list[int] = []
            while cand and len(kept) < max_out:
                best = cand.pop(0)
                kept.append(best)
                cand = [i for i in cand
                        if _iou(boxes[b, best], boxes[b, i], center) <= iou_thr]
            picked.extend([b, c, i] for i in kept)
    return [np.array(picked, dtype=np.int64).reshape(-1, 3)]


@register("CenterCropPad")
def center_crop_pad(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x, shape = inputs[0], [int(v) for v in inputs[1]]
    axes = attrs.get("axes") or list(range(x.ndim))
    y = x
    for a, target in zip(axes, shape, strict=True):
        a = norm_axis(a, x.ndim)
        n = y.shape[a]
        if n > target:  # crop: start rounded down
            start = (n - target) // 2
            y = np.take(y, range(start, start + target), axis=a)
        elif n < target:  # pad: the odd pixel goes to the end
            before = (target - n) // 2
            width = [(0, 0)] * y.ndim
            width[a] = (before, target - n - before)
            y = np.pad(y, width)
    return [y]
