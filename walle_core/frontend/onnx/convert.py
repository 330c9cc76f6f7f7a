"""ONNX protobuf → IR graph: values, types (with symbolic dims), attributes, subgraphs.

Value types come from the model's own declarations completed by ONNX shape inference (best
effort: the engine re-derives concrete shapes when it plans, this is for metadata and
``walle model inspect``). ``Constant`` nodes become constant values here, the first step of
constant folding; the session then folds every node whose inputs are all constants
(``runtime/constant_folding``), and the planner what depends on input shapes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import onnx
from onnx import numpy_helper

from walle_core.ir import dtypes
from walle_core.ir.errors import ModelError
from walle_core.ir.graph import Dim, Graph, Node, TensorType, Value


def text(value: str | bytes) -> str:
    """Protobuf hands invalid UTF-8 back as bytes; names in errors must still be text."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _tensor_type(tp: onnx.TypeProto) -> TensorType | None:
    if not tp.HasField("tensor_type"):
        return None
    tt = tp.tensor_type
    try:
        dtype = dtypes.from_onnx(tt.elem_type)
    except KeyError:
        return None
    if not tt.HasField("shape"):
        return TensorType(dtype, None)
    dims: list[Dim] = []
    for d in tt.shape.dim:
        if d.HasField("dim_value"):
            dims.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            dims.append(d.dim_param)
        else:
            dims.append(None)
    return TensorType(dtype, tuple(dims))


def to_array(tensor: onnx.TensorProto, label: str) -> np.ndarray:
    """Decode a tensor proto, rejecting data whose size disagrees with its dims."""
    try:
        return np.asarray(numpy_helper.to_array(tensor))
    except Exception as exc:
        raise ModelError(f"{label}: tensor {tensor.name!r} cannot be decoded ({exc})") from None


def _constant_value(node: onnx.NodeProto, label: str) -> np.ndarray:
    for attr in node.attribute:
        name = attr.name
        if name == "value":
            return to_array(attr.t, label)
        if name == "sparse_value":
            return _sparse_to_dense(attr.sparse_tensor, label)
        if name == "value_float":
            return np.array(attr.f, dtype=np.float32)
        if name == "value_floats":
            return np.array(list(attr.floats), dtype=np.float32)
        if name == "value_int":
            return np.array(attr.i, dtype=np.int64)
        if name == "value_ints":
            return np.array(list(attr.ints), dtype=np.int64)
        if name == "value_string":
            return np.array(attr.s.decode("utf-8", "replace"), dtype=object)
        if name == "value_strings":
            return np.array([s.decode("utf-8", "replace") for s in attr.strings], dtype=object)
    raise ModelError(f"{label}: Constant node {node.name!r} has no value attribute")


def _sparse_to_dense(sparse: onnx.SparseTensorProto, label: str) -> np.ndarray:
    values = to_array(sparse.values, label)
    indices = to_array(sparse.indices, label).astype(np.int64)
    shape = tuple(int(d) for d in sparse.dims)
    dense = np.zeros(shape, dtype=values.dtype)
    if indices.ndim == 1:
        dense.reshape(-1)[indices] = values
    else:
        dense[tuple(indices.T)] = values
    return dense


class _Converter:
    def __init__(self, label: str, opsets: dict[str, int]) -> None:
        self.label = label
        self.opsets = opsets

    def attribute(self, attr: onnx.AttributeProto, scope: dict[str, Value]) -> Any:
        kind = attr.type
        A = onnx.AttributeProto
        if kind == A.FLOAT:
            return float(attr.f)
        if kind == A.INT:
            return int(attr.i)
        if kind == A.STRING:
            return text(attr.s)
        if kind == A.TENSOR:
            return to_array(attr.t, self.label)
        if kind == A.SPARSE_TENSOR:
            return _sparse_to_dense(attr.sparse_tensor, self.label)
        if kind == A.GRAPH:
            return self.graph(attr.g, dict(scope))
        if kind == A.FLOATS:
            return [float(f) for f in attr.floats]
        if kind == A.INTS:
            return [int(i) for i in attr.ints]
        if kind == A.STRINGS:
            return [s.decode("utf-8", "replace") for s in attr.strings]
        if kind == A.TENSORS:
            return [to_array(t, self.label) for t in attr.tensors]
        if kind == A.GRAPHS:
            return [self.graph(g, dict(scope)) for g in attr.graphs]
        if kind == A.TYPE_PROTO:
            return attr.tp
        raise ModelError(f"{self.label}: attribute {attr.name!r} has unknown type {kind}")

    def graph(self, g: onnx.GraphProto, scope: dict[str, Value],
              light: Light | None = None) -> Graph:
        """``light``: what :func:`without_weights` left out of ``g``; its weights are
        initializers again here, and the inputs standing in for them are not inputs."""
        declared = [*g.value_info, *g.output, *g.input]
        types = {text(vi.name): _tensor_type(vi.type) for vi in declared}
        values: dict[str, Value] = scope

        def define(name: str) -> Value:
            v = Value(name, types.get(name))
            values[name] = v
            return v

        inits = []
        read = light.arrays if light else {}
        for t in [*g.initializer, *(light.weights if light else ())]:
            v = define(text(t.name))
            v.const = read[v.name] if v.name in read else to_array(t, self.label)
            v.type = TensorType(dtypes.from_numpy(v.const.dtype), tuple(v.const.shape))
            inits.append(v)
        for sp in g.sparse_initializer:
            v = define(text(sp.values.name))
            v.const = _sparse_to_dense(sp, self.label)
            inits.append(v)
        init_names = {v.name for v in inits}
        added = light.added if light else frozenset()
        inputs = [values[text(i.name)] if text(i.name) in init_names else define(text(i.name))
                  for i in g.input if text(i.name) not in added]
        nodes = []
        for index, n in enumerate(g.node):
            node = self.node(n, index, values, types)
            if node is not None:
                nodes.append(node)
        outputs: list[Value] = []
        for o in g.output:
            if text(o.name) not in values:
                raise ModelError(f"{self.label}: graph output {text(o.name)!r} is never produced")
            outputs.append(values[text(o.name)])
        return Graph(text(g.name), inputs, outputs, nodes, inits, dict(self.opsets), g.doc_string)

    def node(
        self, n: onnx.NodeProto, index: int, values: dict[str, Value],
        types: dict[str, TensorType | None],
    ) -> Node | None:
        op_type, domain = text(n.op_type), text(n.domain)
        name = text(n.name) or f"{op_type}_{index}"
        if op_type == "Constant" and domain in ("", "ai.onnx") and len(n.output) == 1:
            v = Value(text(n.output[0]))
            v.const = _constant_value(n, self.label)
            dt = dtypes.from_numpy(v.const.dtype)
            v.type = TensorType(dt, tuple(v.const.shape))
            values[v.name] = v
            return None
        inputs: list[Value | None] = []
        for i in map(text, n.input):
            if i == "":
                inputs.append(None)
            elif i in values:
                inputs.append(values[i])
            else:
                raise ModelError(
                    f"{self.label}: node {name!r} ({op_type}) reads {i!r}, which no node, "
                    "input or initializer defines"
                )
        attrs = {text(a.name): self.attribute(a, values) for a in n.attribute}
        outputs: list[Value] = []
        for o in map(text, n.output):
            v = Value(o, types.get(o)) if o else Value(f"{name}:unused:{len(outputs)}")
            if o:
                values[o] = v
            outputs.append(v)
        domain = "" if domain == "ai.onnx" else domain
        return Node(op_type, inputs, outputs, attrs, domain, name)


#: Initializers above this many bytes of data are left out of the copy given to the ONNX
#: checker and shape inference (see :func:`without_weights`).
LIGHT_LIMIT = 4096


def _data_bytes(t: onnx.TensorProto) -> int:
    return len(t.raw_data) + 4 * (len(t.float_data) + len(t.int32_data)) + \
        8 * (len(t.int64_data) + len(t.double_data) + len(t.uint64_data)) + \
        sum(len(s) for s in t.string_data)


class Light(NamedTuple):
    model: onnx.ModelProto  # the copy without large initializers
    weights: list[onnx.TensorProto]  # those initializers (the original messages)
    added: frozenset[str]  # the graph inputs that stand in for them (not real inputs)
    arrays: dict[str, np.ndarray] = {}  # their values where read from the file (weights.py)


def without_weights(proto: onnx.ModelProto,
                    arrays: dict[str, np.ndarray] | None = None) -> Light:
    """A copy of ``proto`` whose large initializers are graph inputs of the same type and shape,
    with those initializers (the original messages, not copies).

    The ONNX checker and shape inference serialise and re-parse the whole model, several copies
    of every weight at once: on MobileNetV2 (14 MB of weights) that was ~50 MB of resident memory
    at session creation for figures that only need types and shapes. Small initializers stay,
    since inference reads the values of shape-like ones (a Reshape's target, say); the inferred
    types are the same (checked on the benchmark set and the onnx light models).
    """
    g = proto.graph
    light = onnx.ModelProto()
    light.ir_version = proto.ir_version
    light.opset_import.extend(proto.opset_import)
    light.functions.extend(proto.functions)
    lg = light.graph
    lg.name = g.name
    lg.node.extend(g.node)
    lg.input.extend(g.input)
    lg.output.extend(g.output)
    lg.value_info.extend(g.value_info)
    lg.sparse_initializer.extend(g.sparse_initializer)
    declared = {vi.name for vi in g.input}
    arrays = arrays or {}
    big, added = [], set()
    for t in g.initializer:
        if text(t.name) not in arrays and _data_bytes(t) <= LIGHT_LIMIT:
            lg.initializer.append(t)
            continue
        big.append(t)
        if t.name not in declared:
            lg.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
            added.add(text(t.name))
    return Light(light, big, frozenset(added), arrays)


def _infer(proto: onnx.ModelProto) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(proto, strict_mode=False)
    except Exception:  # inference is best effort; the planner derives concrete shapes anyway
        return proto


def convert_model(proto: onnx.ModelProto, label: str, light: Light | None = None,
                  inferred: onnx.ModelProto | None = None) -> Graph:
    """Build the IR graph of ``proto`` (already parsed and checked); ``light`` is
    :func:`without_weights` of it when the caller has made it already, ``inferred`` the
    light model with ONNX's shape inference applied (computed here when not given)."""
    opsets = {("" if text(o.domain) == "ai.onnx" else text(o.domain)): int(o.version)
              for o in proto.opset_import}
    light = light or without_weights(proto)
    if inferred is None:
        inferred = _infer(light.model)
    graph = _Converter(label, opsets).graph(inferred.graph, {}, light)
    graph.doc = proto.doc_string
    return graph
