"""What a decomposer sees and emits: the program builder and the per-node context.

A decomposer is ``lower(ctx) -> list[int]``: it reads the node's input slots, shapes and (where
known) constant values, emits primitive steps into the builder and returns one slot per node
output. Shapes are always concrete here: the planner runs once per set of input shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from walle_core.ir import dtypes
from walle_core.ir.dtypes import DType
from walle_core.ir.errors import ShapeError, WalleError
from walle_core.ir.primitives import Primitive, Step, TensorSpec

MAX_TENSOR_BYTES = 1 << 36  # 64 GiB: anything larger is a malformed shape, not a real tensor


class Decline(Exception):
    """A decomposer cannot express this node (rare attribute combination): use a kernel."""


class DataDependent(WalleError):
    """Planning needs a value only known at run time; the session plans such shapes eagerly."""


@dataclass
class Builder:
    """A primitive program under construction: slot table, constants and steps."""

    slots: list[TensorSpec] = field(default_factory=list)
    consts: dict[int, Any] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)

    def new_slot(self, shape: tuple[int, ...], dtype: DType) -> int:
        spec = TensorSpec(tuple(int(d) for d in shape), dtype)
        if any(d < 0 for d in spec.shape) or spec.nbytes > MAX_TENSOR_BYTES:
            raise ShapeError(f"tensor of shape {spec.shape} ({dtype}) is negative or too large")
        self.slots.append(spec)
        return len(self.slots) - 1

    def const_slot(self, value: Any) -> int:
        if isinstance(value, np.ndarray):
            slot = self.new_slot(value.shape, dtypes.from_numpy(value.dtype))
        else:  # a sequence or other opaque value, only ever folded
            slot = self.new_slot((), dtypes.float32)
        self.consts[slot] = value
        return slot

    def emit(self, prim: Primitive, inputs: list[int], outputs: list[int], origin: str) -> None:
        self.steps.append(Step(prim, list(inputs), list(outputs), origin))


@dataclass
class NodeContext:
    """One node being lowered: its inputs (slot or -1), attributes and opset."""

    builder: Builder
    op_type: str
    domain: str
    name: str
    inputs: list[int]
    attrs: dict[str, Any]
    opset: int
    n_outputs: int

    def has(self, i: int) -> bool:
        return i < len(self.inputs) and self.inputs[i] >= 0

    def spec(self, i: int) -> TensorSpec:
        return self.builder.slots[self.inputs[i]]

    def shape(self, i: int) -> tuple[int, ...]:
        return self.spec(i).shape

    def dtype(self, i: int) -> DType:
        return self.spec(i).dtype

    def const(self, i: int) -> Any:
        """The input's value if known at plan time, else None."""
        if not self.has(i):
            return None
        return self.builder.consts.get(self.inputs[i])

    def need_const(self, i: int) -> np.ndarray:
        """The input's value; raises :class:`DataDependent` if only known at run time."""
        if not self.has(i):
            raise self.fail(f"required input {i} is missing")
        value = self.const(i)
        if value is None:
            raise DataDependent(f"{self.op_type} node {self.name!r} needs input {i} at plan time")
        return np.asarray(value)

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)

    def out(self, shape: tuple[int, ...], dtype: DType) -> int:
        return self.builder.new_slot(shape, dtype)

    def const_slot(self, value: np.ndarray) -> int:
        return self.builder.const_slot(np.asarray(value, order="C"))

    def emit(self, prim: Primitive, inputs: list[int], outputs: list[int]) -> None:
        self.builder.emit(prim, inputs, outputs, self.name)

    def fail(self, message: str) -> ShapeError:
        return ShapeError(f"{self.op_type} node {self.name!r}: {message}")


Lowering = Callable[[NodeContext], list[int]]
REGISTRY: dict[tuple[str, str], Lowering] = {}


def lowers(*op_types: str, domain: str = "") -> Callable[[Lowering], Lowering]:
    """Register a decomposer for ``op_types`` (ONNX names) in ``domain``."""

    def register(fn: Lowering) -> Lowering:
        for op in op_types:
            REGISTRY[(domain, op)] = fn
        return fn

    return register


def norm_axis(axis: int, rank: int) -> int:
    if axis < 0:
        axis += rank
    if not 0 <= axis < max(rank, 1):
        raise ShapeError(f"axis {axis} out of range for rank {rank}")
    return axis
