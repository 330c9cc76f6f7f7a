"""Signal ops: DFT, STFT, Hann/Hamming/Blackman windows.

Complex values are carried as a trailing dim of size 2 (real, imag); a trailing dim of 1 is a
real signal. DFT: X[k] = sum_n x[n] exp(-+2 pi i k n / N), the inverse divided by N.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from walle_core.reference_ops._util import norm_axis, np_dtype, opt_input
from walle_core.reference_ops.registry import register

Inputs = list[Any]
Attrs = dict[str, Any]


def _to_complex(x: np.ndarray) -> np.ndarray:
    xf = x.astype(np.float64)
    return xf[..., 0] + 1j * xf[..., 1] if x.shape[-1] == 2 else xf[..., 0]


def _from_complex(c: np.ndarray, dtype: np.dtype) -> np.ndarray:
    return np.stack([c.real, c.imag], axis=-1).astype(dtype)


@register("DFT")
def dft(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    length_in = opt_input(inputs, 1)
    if opset >= 20:
        axis_in = opt_input(inputs, 2)
        axis = int(axis_in) if axis_in is not None and axis_in.size else -2
    else:
        axis = attrs.get("axis", 1)
    axis = norm_axis(axis, x.ndim)  # counts the trailing complex dim, as ONNX does
    c = _to_complex(x)
    n = int(length_in) if length_in is not None and length_in.size else x.shape[axis]
    if attrs.get("inverse", 0):
        y = np.fft.ifft(c, n=n, axis=axis)
    else:
        y = np.fft.fft(c, n=n, axis=axis)
    if attrs.get("onesided", 0):
        y = np.take(y, range(n // 2 + 1), axis=axis)
    return [_from_complex(y, x.dtype)]


@register("STFT")
def stft(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    # Y[b, f, k] = sum_n w[n] x[b, f*step + n] exp(-2 pi i k n / L)
    x, step = inputs[0], int(inputs[1])
    window, length_in = opt_input(inputs, 2), opt_input(inputs, 3)
    sig = _to_complex(x)  # [batch, len]
    flen = int(length_in) if length_in is not None else window.shape[0]
    w = window.astype(np.float64) if window is not None else np.ones(flen)
    frames = (sig.shape[1] - flen) // step + 1
    segs = np.stack([sig[:, f * step: f * step + flen] * w for f in range(frames)], axis=1)
    y = np.fft.fft(segs, axis=-1)
    if attrs.get("onesided", 1):
        y = y[..., : flen // 2 + 1]
    return [_from_complex(y, x.dtype)]


def _window(inputs: Inputs, attrs: Attrs, coeffs: list[float]) -> list[np.ndarray]:
    size = int(inputs[0])
    n_den = size if attrs.get("periodic", 1) else size - 1
    n = np.arange(size)
    y = sum(((-1) ** k) * a * np.cos(2 * np.pi * k * n / n_den) for k, a in enumerate(coeffs))
    return [np.asarray(y).astype(np_dtype(attrs.get("output_datatype", 1)))]


@register("HannWindow")
def hann_window(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    return _window(inputs, attrs, [0.5, 0.5])


@register("HammingWindow")
def hamming_window(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    return _window(inputs, attrs, [25 / 46, 21 / 46])


@register("BlackmanWindow")
def blackman_window(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    return _window(inputs, attrs, [0.42, 0.5, 0.08])


@register("MelWeightMatrix")
def mel_weight_matrix(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    # Triangular filters between mel-spaced points mapped to FFT bins.
    n_mel, dft_len, rate, lo, hi = (float(np.asarray(v)) for v in inputs[:5])
    bins = int(dft_len) // 2 + 1

    def to_mel(f: float) -> float:
        return 2595 * np.log10(1 + f / 700)

    mels = np.linspace(to_mel(lo), to_mel(hi), int(n_mel) + 2)
    hz = 700 * (10 ** (mels / 2595) - 1)
    pts = np.floor((dft_len + 1) * hz / rate).astype(np.int64)
    y = np.zeros((bins, int(n_mel)))
    for m in range(1, int(n_mel) + 1):
        left, center, right = pts[m - 1], pts[m], pts[m + 1]
        for k in range(left, center):
            y[k, m - 1] = (k - left) / max(center - left, 1)
        if center == right:
            y[center, m - 1] = 1
        for k in range(center, right):
            y[k, m - 1] = (right - k) / max(right - center, 1)
    return [y.astype(np_dtype(attrs.get("output_datatype", 1)))]
