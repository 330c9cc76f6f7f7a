"""Plain-numpy kernels for ONNX operators: the reference backend's native composite kernels.

The reference backend decomposes data-movement and core compute ops into primitives and calls
these kernels for everything else; other backends are tested against it, so a kernel here is
written for clarity and exact ONNX semantics, not speed.

Calling convention (the engine codes against it):

``kernel(inputs, attrs, opset) -> outputs``

- ``inputs``: ONNX order, ``None`` for an omitted optional input; trailing omitted inputs may be
  absent from the list. Sequence values are Python lists of arrays.
- ``attrs``: the node's attributes decoded to plain Python (see :mod:`.onnx_attrs`); kernels
  apply ONNX defaults themselves.
- ``opset``: the model's opset version for the op's domain (semantics changed across versions).
- returns every output in ONNX order, with the dtype ONNX specifies; the caller drops the
  optional outputs the node does not use.
"""

from __future__ import annotations

from walle_core.reference_ops import families as _families  # noqa: F401  (registers kernels)
from walle_core.reference_ops.registry import OpKernel, lookup, registered

__all__ = ["OpKernel", "get_kernel", "supported_ops"]


def get_kernel(op_type: str, domain: str = "") -> OpKernel | None:
    """The kernel for ``op_type`` in ``domain`` ("" or "ai.onnx" is the default domain)."""
    return lookup(op_type, domain)


def supported_ops() -> set[tuple[str, str]]:
    """Every (domain, op_type) with a kernel; domain "" is ai.onnx."""
    return registered()
