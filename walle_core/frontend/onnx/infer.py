"""Per-node ONNX shape inference for ops the engine runs as native kernels.

Geometry computes the shapes of everything it lowers; for the long tail of composite ops we ask
ONNX's own per-op inference, with the concrete input shapes and any constant inputs. ``None``
means the output shape depends on data (NonZero, Unique, ...): the session then plans eagerly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from walle_core.ir import dtypes
from walle_core.ir.graph import Graph, Node
from walle_core.ir.primitives import TensorSpec


def _attr_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return numpy_helper.from_array(value)
    return value


def infer_outputs(node: Node, opsets: dict[str, int], specs: list[TensorSpec | None],
                  consts: list[Any]) -> list[TensorSpec] | None:
    if any(isinstance(v, Graph) or (isinstance(v, list) and v and isinstance(v[0], Graph))
           for v in node.attrs.values()):
        return None
    try:
        proto = helper.make_node(
            node.op_type, [f"i{k}" if s is not None else "" for k, s in enumerate(specs)],
            [f"o{k}" for k in range(len(node.outputs))], domain=node.domain,
            **{k: _attr_value(v) for k, v in node.attrs.items()})
        version = opsets.get(node.domain, 1)
        schema = onnx.defs.get_schema(node.op_type, version, node.domain)
        types, data = {}, {}
        for k, (spec, const) in enumerate(zip(specs, consts, strict=True)):
            if spec is None:
                continue
            types[f"i{k}"] = helper.make_tensor_type_proto(spec.dtype.onnx_code, spec.shape)
            if isinstance(const, np.ndarray) and const.size <= 4096 and const.dtype != object:
                data[f"i{k}"] = numpy_helper.from_array(const)
        imports = [helper.make_opsetid(d, v) for d, v in opsets.items()]
        out = onnx.shape_inference.infer_node_outputs(schema, proto, types, data, None, imports)
    except Exception:
        return None
    result = []
    for k in range(len(node.outputs)):
        tp = out.get(f"o{k}")
        if tp is None or not tp.HasField("tensor_type") or not tp.tensor_type.HasField("shape"):
            return None
        dims = tp.tensor_type.shape.dim
        if not all(d.HasField("dim_value") for d in dims):
            return None
        try:
            dt = dtypes.from_onnx(tp.tensor_type.elem_type)
        except KeyError:
            return None
        result.append(TensorSpec(tuple(int(d.dim_value) for d in dims), dt))
    return result
