"""Normalisations (BatchNorm, LayerNorm, RMSNorm, InstanceNorm, GroupNorm, LRN,
MeanVarianceNormalization, LpNormalization) and the softmax-family losses.

Statistics are computed in float64 (ONNX's stash_type is float32; float64 only removes error)
and the result cast back to the input dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from walle_core.reference_ops._util import norm_axes, norm_axis, opt_input
from walle_core.reference_ops.activations import log_softmax
from walle_core.reference_ops.registry import register

Inputs = list[Any]
Attrs = dict[str, Any]


def _chan(p: np.ndarray, ndim: int) -> np.ndarray:
    """A per-channel [C] parameter shaped to broadcast over [N, C, ...]."""
    return p.reshape(1, -1, *([1] * (ndim - 2)))


@register("BatchNormalization")
def batch_norm(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    # y = (x - mean) / sqrt(var + eps) * scale + bias; training mode uses batch statistics and
    # also returns running = running * momentum + batch * (1 - momentum).
    x, scale, bias, mean, var = inputs[:5]
    eps = attrs.get("epsilon", 1e-5)
    xf = x.astype(np.float64)
    if attrs.get("training_mode", 0):
        axes = tuple(i for i in range(x.ndim) if i != 1)
        bm, bv = xf.mean(axis=axes), xf.var(axis=axes)
        mom = attrs.get("momentum", 0.9)
        y = (xf - _chan(bm, x.ndim)) / np.sqrt(_chan(bv, x.ndim) + eps)
        y = y * _chan(scale, x.ndim) + _chan(bias, x.ndim)
        rm = mean * mom + bm * (1 - mom)
        rv = var * mom + bv * (1 - mom)
        return [y.astype(x.dtype), rm.astype(mean.dtype), rv.astype(var.dtype)]
    y = (xf - _chan(mean, x.ndim)) / np.sqrt(_chan(var, x.ndim).astype(np.float64) + eps)
    y = y * _chan(scale, x.ndim) + _chan(bias, x.ndim)
    return [y.astype(x.dtype), mean, var]


@register("LayerNormalization")
def layer_norm(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x, scale, bias = inputs[0], inputs[1], opt_input(inputs, 2)
    axis = norm_axis(attrs.get("axis", -1), x.ndim)
    axes = tuple(range(axis, x.ndim))
    xf = x.astype(np.float64)
    mean = xf.mean(axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(((xf - mean) ** 2).mean(axis=axes, keepdims=True)
                            + attrs.get("epsilon", 1e-5))
    y = (xf - mean) * inv_std * scale
    if bias is not None:
        y = y + bias
    stash = np.float32 if attrs.get("stash_type", 1) == 1 else x.dtype
    return [y.astype(x.dtype), mean.astype(stash), inv_std.astype(stash)]


@register("RMSNormalization")
def rms_norm(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x, scale = inputs[0], inputs[1]
    axis = norm_axis(attrs.get("axis", -1), x.ndim)
    xf = x.astype(np.float64)
    ms = (xf**2).mean(axis=tuple(range(axis, x.ndim)), keepdims=True)
    y = xf / np.sqrt(ms + attrs.get("epsilon", 1e-5)) * scale
    return [y.astype(x.dtype)]


@register("InstanceNormalization")
def instance_norm(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x, scale, bias = inputs[0], inputs[1], inputs[2]
    axes = tuple(range(2, x.ndim))
    xf = x.astype(np.float64)
    mean, var = xf.mean(axis=axes, keepdims=True), xf.var(axis=axes, keepdims=True)
    y = (xf - mean) / np.sqrt(var + attrs.get("epsilon", 1e-5))
    return [(y * _chan(scale, x.ndim) + _chan(bias, x.ndim)).astype(x.dtype)]


@register("GroupNormalization")
def group_norm(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x, scale, bias = inputs[0], inputs[1], inputs[2]
    g = attrs["num_groups"]
    n, c = x.shape[:2]
    xg = x.astype(np.float64).reshape(n, g, -1)
    mean, var = xg.mean(axis=2, keepdims=True), xg.var(axis=2, keepdims=True)
    y = ((xg - mean) / np.sqrt(var + attrs.get("epsilon", 1e-5))).reshape(x.shape)
    if scale.size == g and g != c:  # opset 18: per-group scale and bias
        scale, bias = np.repeat(scale, c // g), np.repeat(bias, c // g)
    return [(y * _chan(scale, x.ndim) + _chan(bias, x.ndim)).astype(x.dtype)]


@register("LRN")
def lrn(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    # y = x / (bias + alpha / size * sum_{c' in window(c)} x[c']^2) ^ beta
    x = inputs[0]
    size = attrs["size"]
    alpha, beta, bias = attrs.get("alpha", 1e-4), attrs.get("beta", 0.75), attrs.get("bias", 1.0)
    sq = x.astype(np.float64) ** 2
    c = x.shape[1]
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    acc = np.zeros_like(sq)
    for ch in range(c):
        acc[:, ch] = sq[:, max(0, ch - lo): min(c, ch + hi + 1)].sum(axis=1)
    return [(x / (bias + alpha / size * acc) ** beta).astype(x.dtype)]


@register("MeanVarianceNormalization")
def mvn(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    axes = norm_axes(attrs.get("axes", [0, 2, 3]), x.ndim)
    xf = x.astype(np.float64)
    mean = xf.mean(axis=axes, keepdims=True)
    std = np.sqrt((xf**2).mean(axis=axes, keepdims=True) - mean**2)
    return [((xf - mean) / (std + 1e-9)).astype(x.dtype)]


@register("LpNormalization")
def lp_norm(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    axis = norm_axis(attrs.get("axis", -1), x.ndim)
    p = attrs.get("p", 2)
    xf = x.astype(np.float64)
    norm = np.sum(np.abs(xf) ** p, axis=axis, keepdims=True) ** (1.0 / p)
    return [np.where(norm == 0, 0, xf / np.where(norm == 0, 1, norm)).astype(x.dtype)]


def nll_loss(logp: np.ndarray, target: np.ndarray, weight: np.ndarray | None,
             reduction: str, ignore_index: int | None) -> np.ndarray:
    """loss[n, d...] = -w[t] * logp[n, t, d...] with t = target[n, d...]; ignored -> 0."""
    t = target.astype(np.int64)
    ignored = t == ignore_index if ignore_index is not None else np.zeros(t.shape, bool)
    t_safe = np.where(ignored, 0, t)
    picked = np.take_along_axis(logp, np.expand_dims(t_safe, 1), axis=1).squeeze(1)
    w = np.ones(t.shape) if weight is None else weight[t_safe].astype(np.float64)
    w = np.where(ignored, 0.0, w)
    loss = -picked.astype(np.float64) * w
    if reduction == "none":
        return loss.astype(logp.dtype)
    if reduction == "sum":
        return np.array(loss.sum(), dtype=logp.dtype)
    return np.array(loss.sum() / w.sum() if w.sum() else 0.0, dtype=logp.dtype)


@register("NegativeLogLikelihoodLoss")
def negative_log_likelihood_loss(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x, t, w = inputs[0], inputs[1], opt_input(inputs, 2)
    return [nll_loss(x, t, w, attrs.get("reduction", "mean"), attrs.get("ignore_index"))]


@register("SoftmaxCrossEntropyLoss")
def softmax_cross_entropy_loss(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x, t, w = inputs[0], inputs[1], opt_input(inputs, 2)
    logp = log_softmax(x.astype(np.float64), 1).astype(x.dtype)
    loss = nll_loss(logp, t, w, attrs.get("reduction", "mean"), attrs.get("ignore_index"))
    return [loss, logp]
