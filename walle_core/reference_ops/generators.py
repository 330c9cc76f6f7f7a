"""Tensor generators and casts: Constant, ConstantOfShape, Range, EyeLike, Cast, CastLike,
random ops (only shape and dtype are defined, values are random), Bernoulli.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from walle_core.reference_ops._util import np_dtype
from walle_core.reference_ops.casting import cast_to
from walle_core.reference_ops.registry import register

Inputs = list[Any]
Attrs = dict[str, Any]


@register("Constant")
def constant(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    for key, dtype in (("value", None), ("value_float", np.float32), ("value_int", np.int64),
                       ("value_string", object), ("value_floats", np.float32),
                       ("value_ints", np.int64), ("value_strings", object),
                       ("sparse_value", None)):
        if key in attrs:
            return [np.array(attrs[key], dtype=dtype)]
    raise ValueError("Constant: no value attribute")


@register("ConstantOfShape")
def constant_of_shape(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    value = attrs.get("value")
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    shape = [int(d) for d in np.asarray(inputs[0]).reshape(-1)]
    return [np.full(shape, fill[0], dtype=fill.dtype)]


@register("Range")
def range_(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    start, limit, delta = (np.asarray(v).reshape(()) for v in inputs[:3])
    # n = max(ceil((limit - start) / delta), 0); y[i] = start + i * delta
    n = max(int(np.ceil((float(limit) - float(start)) / float(delta))), 0)
    return [(start + np.arange(n) * delta).astype(start.dtype)]


@register("EyeLike")
def eye_like(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]
    dtype = np_dtype(attrs["dtype"]) if "dtype" in attrs else x.dtype
    return [np.eye(x.shape[0], x.shape[1], k=attrs.get("k", 0), dtype=dtype)]


@register("Cast")
def cast(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    return [cast_to(inputs[0], attrs["to"], saturate=bool(attrs.get("saturate", 1)),
                    round_mode=attrs.get("round_mode", "up"))]


@register("CastLike")
def cast_like(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    from onnx.helper import np_dtype_to_tensor_dtype

    to = np_dtype_to_tensor_dtype(inputs[1].dtype)
    return [cast_to(inputs[0], to, saturate=bool(attrs.get("saturate", 1)),
                    round_mode=attrs.get("round_mode", "up"))]


def _rng(attrs: Attrs) -> np.random.Generator:
    seed = attrs.get("seed")
    return np.random.default_rng(None if seed is None else int(seed))


def _random_dtype(attrs: Attrs, like: np.ndarray | None) -> np.dtype:
    if "dtype" in attrs:
        return np_dtype(attrs["dtype"])
    return like.dtype if like is not None else np.dtype(np.float32)


@register("RandomNormal", "RandomNormalLike")
def random_normal(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    like = inputs[0] if inputs else None
    shape = like.shape if like is not None else tuple(attrs["shape"])
    y = _rng(attrs).normal(attrs.get("mean", 0.0), attrs.get("scale", 1.0), shape)
    return [y.astype(_random_dtype(attrs, like))]


@register("RandomUniform", "RandomUniformLike")
def random_uniform(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    like = inputs[0] if inputs else None
    shape = like.shape if like is not None else tuple(attrs["shape"])
    y = _rng(attrs).uniform(attrs.get("low", 0.0), attrs.get("high", 1.0), shape)
    return [y.astype(_random_dtype(attrs, like))]


@register("Bernoulli")
def bernoulli(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    p = inputs[0]
    y = _rng(attrs).uniform(0.0, 1.0, p.shape) < p
    return [y.astype(_random_dtype(attrs, p))]


@register("Multinomial")
def multinomial(inputs: Inputs, attrs: Attrs, opset: int) -> list[np.ndarray]:
    x = inputs[0]  # [batch, classes] unnormalised log-probabilities
    n = attrs.get("sample_size", 1)
    p = np.exp(x - x.max(axis=1, keepdims=True))
    p = p / p.sum(axis=1, keepdims=True)
    rng = _rng(attrs)
    y = np.stack([rng.choice(x.shape[1], size=n, p=row) for row in p])
    return [y.astype(np_dtype(attrs.get("dtype", 6)))]
