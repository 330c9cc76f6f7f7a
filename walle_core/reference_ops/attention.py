"""Attention-family ops: Attention (MHA/GQA/MQA, causal, windows, KV cache), RotaryEmbedding,
LinearAttention (recurrent forms) and CausalConvWithState.

Layouts: 4-D tensors are [batch, heads, seq, head_size]; 3-D ones pack heads into the last dim
[batch, seq, heads * head_size] and are unpacked with the *_num_heads attributes.
Scores are computed in float64 and cast back, so fp16 inputs get one rounding only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from walle_core.reference_ops._util import opt_input
from walle_core.reference_ops.registry import register

Inputs = list[Any]
Attrs = dict[str, Any]


def _heads(x: np.ndarray, n: int) -> np.ndarray:
    """[B, S, n*D] -> [B, n, S, D]."""
    b, s, _ = x.shape
    return x.reshape(b, s, n, -1).transpose(0, 2, 1, 3)


def _allowed_mask(b: int, s: int, total: int, attrs: Attrs, past_len: int,
                  nonpad: np.ndarray | None) -> np.ndarray:
    """Boolean [B, 1, S, L] of key positions each query may see (causal, window, padding)."""
    i = np.arange(s).reshape(1, s, 1)
    j = np.arange(total).reshape(1, 1, total)
    if past_len:
        offset = np.full((b, 1, 1), past_len)
    elif nonpad is not None:
        offset = nonpad.reshape(b, 1, 1).astype(np.int64) - s
    else:
        offset = np.zeros((b, 1, 1), np.int64)
    pos = i + offset  # absolute query position
    ok = np.ones((b, s, total), bool)
    if attrs.get("is_causal", 0):
        ok &= j <= pos
    left, right = attrs.get("left_window_size", -1), attrs.get("right_window_size", -1)
    if left >= 0:
        ok &= j >= pos - left
    if right >= 0:
        ok &= j <= pos + right
    if nonpad is not None:
        ok &= j < nonpad.reshape(b, 1, 1)
    return ok[:, None]


def _pad_mask(mask: np.ndarray, total: int) -> np.ndarray:
    """A mask whose last dim is shorter than the key length is padded with 'not allowed'."""
    short = total - mask.shape[-1]
    if short <= 0:
        return mask
    fill = False if mask.dtype == bool else -np.inf
    width = [(0, 0)] * (mask.ndim - 1) + [(0, short)]
    return np.pad(mask, width, constant_values=fill)


@register("Attention")
def attention(inputs: Inputs, attrs: Attrs, opset: int) -> list[Any]:
    # Y = softmax(softcap(Q K^T * scale) + bias) V, bias from attn_mask/causal/window/padding.
    q, k, v = inputs[0], inputs[1], inputs[2]
    mask, past_k, past_v = opt_input(inputs, 3), opt_input(inputs, 4), opt_input(inputs, 5)
    nonpad = opt_input(inputs, 6)
    dtype = q.dtype
    is3d = q.ndim == 3
    if is3d:
        q = _heads(q, attrs["q_num_heads"])
        k, v = _heads(k, attrs["kv_num_heads"]), _heads(v, attrs["kv_num_heads"])
    past_len = 0
    if past_k is not None:
        past_len = past_k.shape[2]
        k, v = np.concatenate([past_k, k], axis=2), np.concatenate([past_v, v], axis=2)
    present_k, present_v = k, v
    b, h, s, hd = q.shape
    total = k.shape[2]
    scale = attrs.get("scale") or 1.0 / np.sqrt(hd)
    rep = h // k.shape[1]  # GQA: each kv head serves `rep` consecutive query heads
    kr = np.repeat(k.astype(np.float64), rep, axis=1)
    vr = np.repeat(v.astype(np.float64), rep, axis=1)
    qk = (q.astype(np.float64) * np.sqrt(scale)) @ (kr * np.sqrt(scale)).swapaxes(-1, -2)
    allowed = _allowed_mask(b, s, total, attrs, past_len, nonpad)
    bias = np.zeros((1, 1, s, total))
    if mask is not None:
        mask = _pad_mask(mask, total)
        if mask.dtype == bool:
            allowed = allowed & mask
        else:
            bias = bias + mask.astype(np.float64)
    bias = np.where(allowed, bias, -np.inf)
    softcap = attrs.get("softcap", 0.0)
    capped = softcap * np.tanh(qk / softcap) if softcap > 0 else qk
    scores = capped + bias
    m = np.max(scores, axis=-1, keepdims=True)
    e = np.exp(scores - np.where(np.isfinite(m), m, 0))
    denom = np.sum(e, axis=-1, keepdims=True)
    probs = np.where(denom > 0, e / np.where(denom > 0, denom, 1), 0.0)  # fully masked row -> 0
    y = probs @ vr
    mode = attrs.get("qk_matmul_output_mode", 0)
    qk_out = {0: qk, 1: capped, 2: scores, 3: probs}[mode]
    if is3d:
        y = y.transpose(0, 2, 1, 3).reshape(b, s, -1)
    return [y.astype(dtype), present_k, present_v, qk_out.astype(dtype)]


@register("RotaryEmbedding")
def rotary_embedding(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    # Rotate pairs (x1, x2) by angle theta: (x1 cos - x2 sin, x2 cos + x1 sin); the pairs are
    # halves of the rotary dims, or even/odd elements when interleaved.
    x, cos, sin = inputs[0], inputs[1], inputs[2]
    pos = opt_input(inputs, 3)
    shape = x.shape
    if x.ndim == 4:
        t = x.transpose(0, 2, 1, 3)  # [B, S, H, D]
    else:
        t = x.reshape(shape[0], shape[1], attrs["num_heads"], -1)
    d = t.shape[-1]
    rd = attrs.get("rotary_embedding_dim", 0) or d
    if pos is not None:
        cos, sin = cos[pos], sin[pos]
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]  # [B, S, 1, rd/2]
    rot, rest = t[..., :rd], t[..., rd:]
    if attrs.get("interleaved", 0):
        x1, x2 = rot[..., 0::2], rot[..., 1::2]
    else:
        x1, x2 = rot[..., : rd // 2], rot[..., rd // 2:]
    r1, r2 = x1 * cos - x2 * sin, x2 * cos + x1 * sin
    if attrs.get("interleaved", 0):
        out = np.stack([r1, r2], axis=-1).reshape(rot.shape)
    else:
        out = np.concatenate([r1, r2], axis=-1)
    y = np.concatenate([out, rest], axis=-1)
    y = y.transpose(0, 2, 1, 3) if x.ndim == 4 else y.reshape(shape)
    return [y.astype(x.dtype)]


@register("LinearAttention")
def linear_attention(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    # Sequential recurrence over t (see the op doc); S has shape [B, Hkv, dk, dv].
    q, k, v = inputs[0], inputs[1], inputs[2]
    past, decay, beta = opt_input(inputs, 3), opt_input(inputs, 4), opt_input(inputs, 5)
    hq, hkv = attrs["q_num_heads"], attrs["kv_num_heads"]
    rule = attrs.get("update_rule", "gated_delta")
    bsz, steps, _ = q.shape
    qh = q.astype(np.float64).reshape(bsz, steps, hq, -1)
    kh = k.astype(np.float64).reshape(bsz, steps, hkv, -1)
    vh = v.astype(np.float64).reshape(bsz, steps, hkv, -1)
    dk, dv = kh.shape[-1], vh.shape[-1]
    scale = attrs.get("scale", 0.0) or 1.0 / np.sqrt(qh.shape[-1])
    state = np.zeros((bsz, hkv, dk, dv)) if past is None else past.astype(np.float64)
    rep = hq // hkv
    out = np.zeros((bsz, steps, hq, dv))
    for t in range(steps):
        kt, vt = kh[:, t], vh[:, t]  # [B, Hkv, dk] / [B, Hkv, dv]
        if rule in ("gated", "gated_delta"):
            g = decay[:, t].astype(np.float64).reshape(bsz, hkv, -1)  # [B, Hkv, dk or 1]
            state = np.exp(g)[..., None] * state
        if rule in ("delta", "gated_delta"):
            bt = beta[:, t].astype(np.float64).reshape(bsz, -1)
            bt = np.broadcast_to(bt, (bsz, hkv))[..., None]  # [B, Hkv, 1]
            pred = np.einsum("bhk,bhkv->bhv", kt, state)
            state = state + np.einsum("bhk,bhv->bhkv", kt, bt * (vt - pred))
        else:
            state = state + np.einsum("bhk,bhv->bhkv", kt, vt)
        s_q = np.repeat(state, rep, axis=1)
        out[:, t] = scale * np.einsum("bhk,bhkv->bhv", qh[:, t], s_q)
    return [out.reshape(bsz, steps, -1).astype(q.dtype), state.astype(q.dtype)]


@register("CausalConvWithState")
def causal_conv_with_state(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    # y[b, c, t] = sum_i w[c, 0, i] * xp[b, c, t + i], xp = concat(past or zeros, x) on time.
    x, w = inputs[0], inputs[1]
    bias, past = opt_input(inputs, 2), opt_input(inputs, 3)
    bsz, ch, length = x.shape
    ksz = w.shape[-1]
    if past is None:
        past = np.zeros((bsz, ch, ksz - 1), x.dtype)
    xp = np.concatenate([past, x], axis=2).astype(np.float64)
    y = np.zeros((bsz, ch, length))
    for i in range(ksz):
        y += w[None, :, 0, i, None].astype(np.float64) * xp[:, :, i:i + length]
    if bias is not None:
        y += bias[None, :, None]
    if attrs.get("activation", "none") in ("silu", "swish"):
        y = y / (1 + np.exp(-y))
    present = xp[:, :, xp.shape[2] - (ksz - 1):] if ksz > 1 else xp[:, :, :0]
    return [y.astype(x.dtype), present.astype(x.dtype)]
