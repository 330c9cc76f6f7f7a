"""Element types of the IR, independent of any frontend.

Every value in a graph has one of these. The mapping to numpy exists because numpy is the
reference backend's storage and the exchange format of ``Session.run``; the ONNX code lives here
too so the frontend and the conformance kit agree on one table. Narrow float types (bfloat16,
float8, int4...) map to ``ml_dtypes`` when it is installed, as ``onnx.numpy_helper`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DType:
    """One element type: its IR name, ONNX code and numpy spelling."""

    name: str
    onnx_code: int
    numpy_name: str
    itemsize: int

    @property
    def np(self) -> np.dtype[Any]:
        """The numpy dtype used to store values of this type."""
        try:
            return np.dtype(self.numpy_name)
        except TypeError:
            import ml_dtypes  # narrow floats live outside numpy

            return np.dtype(getattr(ml_dtypes, self.numpy_name))

    @property
    def is_float(self) -> bool:
        return self.name.startswith(("float", "bfloat"))

    @property
    def is_integer(self) -> bool:
        return self.name.startswith(("int", "uint"))

    def __str__(self) -> str:
        return self.name


_TABLE = [
    ("float32", 1, "float32", 4), ("uint8", 2, "uint8", 1), ("int8", 3, "int8", 1),
    ("uint16", 4, "uint16", 2), ("int16", 5, "int16", 2), ("int32", 6, "int32", 4),
    ("int64", 7, "int64", 8), ("string", 8, "object", 8), ("bool", 9, "bool", 1),
    ("float16", 10, "float16", 2), ("float64", 11, "float64", 8), ("uint32", 12, "uint32", 4),
    ("uint64", 13, "uint64", 8), ("complex64", 14, "complex64", 8),
    ("complex128", 15, "complex128", 16), ("bfloat16", 16, "bfloat16", 2),
    ("float8e4m3fn", 17, "float8_e4m3fn", 1), ("float8e4m3fnuz", 18, "float8_e4m3fnuz", 1),
    ("float8e5m2", 19, "float8_e5m2", 1), ("float8e5m2fnuz", 20, "float8_e5m2fnuz", 1),
    ("uint4", 21, "uint4", 1), ("int4", 22, "int4", 1), ("float4e2m1", 23, "float4_e2m1fn", 1),
    ("float8e8m0", 24, "float8_e8m0fnu", 1), ("uint2", 25, "uint2", 1), ("int2", 26, "int2", 1),
]

ALL: dict[str, DType] = {n: DType(n, c, np_name, size) for n, c, np_name, size in _TABLE}
BY_ONNX: dict[int, DType] = {d.onnx_code: d for d in ALL.values()}

float32 = ALL["float32"]
float16 = ALL["float16"]
bfloat16 = ALL["bfloat16"]
float64 = ALL["float64"]
int8 = ALL["int8"]
int16 = ALL["int16"]
int32 = ALL["int32"]
int64 = ALL["int64"]
uint8 = ALL["uint8"]
boolean = ALL["bool"]


def from_onnx(code: int) -> DType:
    """The DType of an ONNX ``TensorProto.DataType`` code; KeyError if unknown."""
    return BY_ONNX[code]


def from_numpy(dtype: Any) -> DType:
    """The DType storing numpy ``dtype``; KeyError if none does."""
    dt = np.dtype(dtype)
    for d in ALL.values():
        try:
            if d.np == dt:
                return d
        except (ImportError, AttributeError):
            continue
    raise KeyError(f"no Walle dtype for numpy dtype {dt}")
