"""Small helpers shared by the kernel families (dtype mapping, axes, attribute defaults)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx


def np_dtype(onnx_type: int) -> np.dtype:
    """numpy dtype for an ONNX ``TensorProto.DataType`` enum value."""
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(onnx_type))


def arr(x: Any, dtype: Any = None) -> np.ndarray:
    """``np.asarray`` that never leaves a numpy scalar behind."""
    return np.asarray(x, dtype=dtype)


def norm_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def norm_axes(axes: Any, rank: int) -> tuple[int, ...]:
    return tuple(sorted(norm_axis(int(a), rank) for a in axes))


def ints(x: np.ndarray | list[int] | None) -> list[int] | None:
    """A 1-D int tensor input (or attribute list) as a Python list; None stays None."""
    if x is None:
        return None
    return [int(v) for v in np.asarray(x).reshape(-1)]


def opt_input(inputs: list[Any], i: int) -> Any:
    """Input ``i`` or None when omitted (absent, or an empty name)."""
    return inputs[i] if i < len(inputs) else None


def is_float(a: np.ndarray) -> bool:
    return a.dtype.kind == "f" or a.dtype.name in ("bfloat16",)
