"""Decode ONNX node attributes to the plain-Python values the kernels take.

INT -> int, FLOAT -> float, STRING -> str (utf-8), INTS/FLOATS/STRINGS -> lists, TENSOR ->
np.ndarray, TENSORS -> list of np.ndarray, SPARSE_TENSOR -> dense np.ndarray. GRAPH attributes
are returned as the raw ``GraphProto`` (subgraph ops need a session, not a kernel).
The engine frontend may reuse this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import AttributeProto, numpy_helper


def _sparse_to_dense(sp: onnx.SparseTensorProto) -> np.ndarray:
    values = numpy_helper.to_array(sp.values)
    indices = numpy_helper.to_array(sp.indices).astype(np.int64)
    dims = tuple(sp.dims)
    dense = np.zeros(dims, dtype=values.dtype)
    if indices.ndim == 1:  # linearised indices
        dense.reshape(-1)[indices] = values
    else:
        dense[tuple(indices.T)] = values
    return dense


def decode_attribute(attr: AttributeProto) -> Any:
    t = attr.type
    if t == AttributeProto.INT:
        return int(attr.i)
    if t == AttributeProto.FLOAT:
        return float(attr.f)
    if t == AttributeProto.STRING:
        return attr.s.decode("utf-8")
    if t == AttributeProto.INTS:
        return [int(v) for v in attr.ints]
    if t == AttributeProto.FLOATS:
        return [float(v) for v in attr.floats]
    if t == AttributeProto.STRINGS:
        return [s.decode("utf-8") for s in attr.strings]
    if t == AttributeProto.TENSOR:
        return numpy_helper.to_array(attr.t)
    if t == AttributeProto.TENSORS:
        return [numpy_helper.to_array(x) for x in attr.tensors]
    if t == AttributeProto.SPARSE_TENSOR:
        return _sparse_to_dense(attr.sparse_tensor)
    if t == AttributeProto.GRAPH:
        return attr.g
    if t == AttributeProto.GRAPHS:
        return list(attr.graphs)
    if t == AttributeProto.TYPE_PROTO:
        return attr.tp
    raise ValueError(f"unsupported attribute type {t} for {attr.name!r}")


def decode_attributes(node: onnx.NodeProto) -> dict[str, Any]:
    """All attributes of ``node`` as a name -> plain value dict."""
    return {a.name: decode_attribute(a) for a in node.attribute}


def opset_for(model: onnx.ModelProto, domain: str) -> int:
    """The model's opset version for ``domain`` ("" and "ai.onnx" are the same domain)."""
    want = "" if domain in ("", "ai.onnx") else domain
    for imp in model.opset_import:
        have = "" if imp.domain in ("", "ai.onnx") else imp.domain
        if have == want:
            return int(imp.version)
    return int(onnx.defs.onnx_opset_version()) if want == "" else 1
