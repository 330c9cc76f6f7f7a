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


class _ShapeOnly:
    """What the reference kernels' geometry helpers read of an input: its shape."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.ndim = len(shape)


def native_outputs(node: Node, specs: list[TensorSpec | None]) -> list[TensorSpec] | None:
    """Output specs of the ops the engine runs as native kernels most often (Conv, the pools,
    Softmax, LayerNormalization, LRN), computed with the reference kernels' own geometry:
    no ONNX schema is looked up. ONNX's operator schemas are built on first use and kept,
    7 MB of the process, a fifth of the engine's memory floor, for figures a few lines give.
    None where this does not cover the node (its outputs then come from ONNX's inference)."""
    from walle_core.reference_ops.conv import _geometry
    from walle_core.reference_ops.pool import _pool_geometry

    if node.domain not in ("", "ai.onnx") or not specs or specs[0] is None:
        return None
    x, op, attrs = specs[0], node.op_type, node.attrs
    nout = len(node.outputs)
    if op in ("Softmax", "LogSoftmax", "LRN", "LayerNormalization") and nout == 1:
        return [TensorSpec(x.shape, x.dtype)]
    if len(x.shape) < 3:
        return None
    if op in ("GlobalAveragePool", "GlobalMaxPool") and nout == 1:
        return [TensorSpec(x.shape[:2] + (1,) * (len(x.shape) - 2), x.dtype)]
    if op == "Conv" and nout == 1 and len(specs) > 1 and specs[1] is not None:
        w = specs[1].shape
        if len(w) != len(x.shape) or x.shape[1] != w[1] * int(attrs.get("group", 1)):
            return None
        k, s, d, pads = _geometry(_ShapeOnly(x.shape), w, attrs)  # type: ignore[arg-type]
        nd = len(k)
        out = [(x.shape[2 + i] + pads[i] + pads[i + nd] - d[i] * (k[i] - 1) - 1) // s[i] + 1
               for i in range(nd)]
        if nd != len(x.shape) - 2 or min(out) < 1:
            return None
        return [TensorSpec((x.shape[0], w[0], *out), x.dtype)]
    if op in ("MaxPool", "AveragePool") and "kernel_shape" in attrs and nout <= 2:
        if len(attrs["kernel_shape"]) != len(x.shape) - 2:
            return None
        out = _pool_geometry(_ShapeOnly(x.shape), attrs)[-1]  # type: ignore[arg-type]
        if min(out) < 1:
            return None
        shape = (x.shape[0], x.shape[1], *out)
        specs_out = [TensorSpec(shape, x.dtype)]
        if nout == 2:
            if op != "MaxPool":
                return None
            specs_out.append(TensorSpec(shape, dtypes.int64))
        return specs_out
    return None


def infer_outputs(node: Node, opsets: dict[str, int], specs: list[TensorSpec | None],
                  consts: list[Any]) -> list[TensorSpec] | None:
    native = native_outputs(node, specs)
    if native is not None:
        return native
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
