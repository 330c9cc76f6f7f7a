"""Geometric computing: ONNX-level ops lowered to Raster regions and atomic primitives.

Importing this package registers every decomposer in :data:`REGISTRY` (keyed by
``(domain, op_type)``); one module per op family, each starting with its formula.
"""

from walle_core.geometry import (  # noqa: F401  (modules register their decomposers)
    cast,
    concat_split,
    conv,
    conv_transpose,
    elementwise,
    gather,
    matmul,
    pad,
    pool,
    reduce,
    reshape,
    softmax,
    tile,
    transpose,
)
from walle_core.geometry.context import REGISTRY, DataDependent, Decline, NodeContext

__all__ = ["REGISTRY", "DataDependent", "Decline", "NodeContext"]
