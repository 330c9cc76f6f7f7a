"""Recurrent layers RNN, GRU, LSTM (forward, reverse, bidirectional; layout 0 and 1).

Weights per direction: W [gates*H, I], R [gates*H, H], B = [Wb; Rb] [2*gates*H]. Gate order:
LSTM i, o, f, c; GRU z, r, h. Per step (f, g, h the activations):
  RNN:  H = f(X W^T + H R^T + Wb + Rb)
  GRU:  z = f(..z), r = f(..r); h~ = g(X Wh^T + (r * H) Rh^T + Rbh + Wbh) (or
        g(X Wh^T + r * (H Rh^T + Rbh) + Wbh) with linear_before_reset); H = (1 - z) h~ + z H
  LSTM: i, o, f gates with peepholes P = [Pi, Po, Pf]; C = f*C + i*g(c~); H = o * h(C)
Variable sequence_lens are honoured by freezing the state and zeroing Y past each length.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from walle_core.reference_ops._util import opt_input
from walle_core.reference_ops.registry import register

Inputs = list[Any]
Attrs = dict[str, Any]
Act = Callable[[np.ndarray], np.ndarray]


def _activation(name: str, alpha: float | None, beta: float | None) -> Act:
    n = name.lower()
    table: dict[str, Act] = {
        "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
        "tanh": np.tanh,
        "relu": lambda x: np.maximum(x, 0),
        "leakyrelu": lambda x: np.where(x < 0, (alpha if alpha is not None else 0.01) * x, x),
        "thresholdedrelu": lambda x: np.where(x > (alpha if alpha is not None else 1.0), x, 0),
        "scaledtanh": lambda x: (alpha or 1.0) * np.tanh((beta or 1.0) * x),
        "hardsigmoid": lambda x: np.clip((alpha if alpha is not None else 0.2) * x
                                         + (beta if beta is not None else 0.5), 0, 1),
        "elu": lambda x: np.where(x < 0, (alpha if alpha is not None else 1.0)
                                  * (np.exp(x) - 1), x),
        "softsign": lambda x: x / (1 + np.abs(x)),
        "softplus": lambda x: np.log1p(np.exp(x)),
        "affine": lambda x: (alpha or 1.0) * x + (beta or 0.0),
    }
    return table[n]


def _acts(attrs: Attrs, defaults: list[str], dirs: int) -> list[list[Act]]:
    names = attrs.get("activations") or defaults * dirs
    alphas = attrs.get("activation_alpha") or []
    betas = attrs.get("activation_beta") or []
    fns = [_activation(n, alphas[i] if i < len(alphas) else None,
                       betas[i] if i < len(betas) else None) for i, n in enumerate(names)]
    k = len(defaults)
    return [fns[d * k:(d + 1) * k] for d in range(dirs)]


def _run(inputs: Inputs, attrs: Attrs, kind: str) -> list[np.ndarray]:
    x, w, r = inputs[0], inputs[1], inputs[2]
    b, seq_lens, h0 = opt_input(inputs, 3), opt_input(inputs, 4), opt_input(inputs, 5)
    c0, peep = opt_input(inputs, 6), opt_input(inputs, 7)
    layout = attrs.get("layout", 0)
    if layout:
        x = x.transpose(1, 0, 2)
    steps, batch, _ = x.shape
    hidden = attrs.get("hidden_size") or r.shape[-1]
    direction = attrs.get("direction", "forward")
    dirs = 2 if direction == "bidirectional" else 1
    gates = {"RNN": 1, "GRU": 3, "LSTM": 4}[kind]
    defaults = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"],
                "LSTM": ["Sigmoid", "Tanh", "Tanh"]}[kind]
    acts = _acts(attrs, defaults, dirs)
    clip = attrs.get("clip")
    lens = np.full(batch, steps) if seq_lens is None else seq_lens.astype(np.int64)
    xs = x.astype(np.float64)
    y = np.zeros((steps, dirs, batch, hidden))
    y_h = np.zeros((dirs, batch, hidden))
    y_c = np.zeros((dirs, batch, hidden))

    def clipped(v: np.ndarray) -> np.ndarray:
        return np.clip(v, -clip, clip) if clip else v

    for d in range(dirs):
        reverse = direction == "reverse" or d == 1
        wd, rd = w[d].astype(np.float64), r[d].astype(np.float64)
        bd = b[d].astype(np.float64) if b is not None else np.zeros(2 * gates * hidden)
        wb, rb = bd[: gates * hidden], bd[gates * hidden:]
        h = h0[d].astype(np.float64) if h0 is not None else np.zeros((batch, hidden))
        c = c0[d].astype(np.float64) if c0 is not None else np.zeros((batch, hidden))
        p = peep[d].astype(np.float64) if peep is not None else np.zeros(3 * hidden)
        f, g = acts[d][0], acts[d][1] if len(acts[d]) > 1 else acts[d][0]
        for step in range(steps):
            t = steps - 1 - step if reverse else step
            active = (t < lens)[:, None]
            if reverse:
                # Reverse direction walks each sequence from its own last valid step.
                active = (step < lens)[:, None]
                t_b = np.clip(lens - 1 - step, 0, steps - 1)
                xt = xs[t_b, np.arange(batch)]
            else:
                xt = xs[t]
            gx = xt @ wd.T + wb
            if kind == "RNN":
                h_new = f(clipped(gx + h @ rd.T + rb))
            elif kind == "GRU":
                hs = slice(2 * hidden, 3 * hidden)
                gh = h @ rd[: 2 * hidden].T + rb[: 2 * hidden]
                z = f(clipped(gx[:, :hidden] + gh[:, :hidden]))
                rr = f(clipped(gx[:, hidden: 2 * hidden] + gh[:, hidden:]))
                if attrs.get("linear_before_reset", 0):
                    cand = gx[:, hs] + rr * (h @ rd[hs].T + rb[hs])
                else:
                    cand = gx[:, hs] + (rr * h) @ rd[hs].T + rb[hs]
                h_new = (1 - z) * g(clipped(cand)) + z * h
            else:
                gs = gx + h @ rd.T + rb
                gi, go, gf, gc = (gs[:, k * hidden:(k + 1) * hidden] for k in range(4))
                i_g = f(clipped(gi + p[:hidden] * c))
                f_g = f(clipped(gf + p[2 * hidden:] * c))
                if attrs.get("input_forget", 0):
                    f_g = 1 - i_g
                c_new = f_g * c + i_g * g(clipped(gc))
                o_g = f(clipped(go + p[hidden: 2 * hidden] * c_new))
                h_new = o_g * acts[d][2](c_new)
                c = np.where(active, c_new, c)
            h = np.where(active, h_new, h)
            out_t = t_b if reverse else np.full(batch, t)
            y[out_t, d, np.arange(batch)] = np.where(active, h, 0.0)
        y_h[d], y_c[d] = h, c
    dt = inputs[0].dtype
    if layout:
        return [y.transpose(2, 0, 1, 3).astype(dt), y_h.transpose(1, 0, 2).astype(dt),
                y_c.transpose(1, 0, 2).astype(dt)]
    return [y.astype(dt), y_h.astype(dt), y_c.astype(dt)]


@register("RNN")
def rnn(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    return _run(inputs, attrs, "RNN")[:2]


@register("GRU")
def gru(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    return _run(inputs, attrs, "GRU")[:2]


@register("LSTM")
def lstm(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    return _run(inputs, attrs, "LSTM")
