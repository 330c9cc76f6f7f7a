"""The IR: dtypes, typed graphs and the primitive op set every backend implements."""

from walle_core.ir.dtypes import DType
from walle_core.ir.errors import (
    InputError,
    ModelError,
    UnsupportedOp,
    UnsupportedOpsError,
    WalleError,
)
from walle_core.ir.graph import Graph, Node, TensorType, Value

__all__ = [
    "DType", "Graph", "InputError", "ModelError", "Node", "TensorType", "UnsupportedOp",
    "UnsupportedOpsError", "Value", "WalleError",
]
