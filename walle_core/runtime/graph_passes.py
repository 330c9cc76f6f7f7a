"""Graph rewrites before planning, on the IR as loaded.

``optimize_graph`` first folds constants (:mod:`walle_core.runtime.constant_folding`), so that
weights an exporter computes (``ConstantOfShape``, ``Unsqueeze`` of initializers ...) are
constants like any initializer, then folds per-channel affine steps:

- into a preceding ``Conv`` (the only reader of its output) with constant weights: an inference
  ``BatchNormalization`` is ``y = x * a + (beta - mean * a)`` with ``a = gamma / sqrt(var + eps)``,
  a ``Mul``/``Div``/``Add``/``Sub`` by a constant that is one value per output channel is
  ``y = x * s + t`` too; either becomes ``W' = W * s`` and ``b' = b * s + t`` per output channel.
  The model then makes one pass over the activations instead of two or three.
- a ``BatchNormalization`` that cannot fold that way (densenet's pre-activation BN after a
  Concat) becomes one scale+shift with its two vectors computed here once (a BatchNormalization
  with mean 0, variance 1, epsilon 0), and the per-channel ``Mul``/``Add`` after it merge into
  those vectors: one Elementwise step at run time where there were BN, Mul and Add.
  On NCHW the scale+shift is a 1x1 depthwise Conv (MNN's Scale op): one native pass, with the
  Relu after it fused into the Conv. (As an Elementwise it needed its two vectors broadcast by
  per-run rasters: Elementwise operands are full-size or scalar in the primitive contract, and
  full-size constants would cost a copy of the activation per BN.) Other ranks keep the
  BatchNormalization form.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from walle_core.ir.graph import Graph, Node, TensorType, Value
from walle_core.runtime.constant_folding import fold_constants

AFFINE_BINARY = ("Mul", "Div", "Add", "Sub")


def optimize_graph(graph: Graph) -> tuple[Graph, dict[str, int]]:
    """Constant folding then affine folding; the new graph and what each pass did."""
    graph, constants = fold_constants(graph)
    graph, stats = fold_channel_affine(graph)
    graph, dropped = drop_unused_initializers(graph)
    return graph, {"constants_folded": constants, **stats, "initializers_dropped": dropped}


def drop_unused_initializers(graph: Graph) -> tuple[Graph, int]:
    """The graph without initializers nothing reads any more (the weights a fold replaced:
    the passes above build new graphs that listed the old ones still, which kept DenseNet's
    pre-BatchNorm Conv weights alive beside the folded ones). Graph inputs and outputs stay."""
    used = {id(v) for n in graph.walk() for v in n.inputs if v is not None}
    used |= {id(v) for v in graph.outputs} | {id(v) for v in graph.inputs}
    kept = [v for v in graph.initializers if id(v) in used]
    if len(kept) == len(graph.initializers):
        return graph, 0
    return replace(graph, initializers=kept), len(graph.initializers) - len(kept)


@dataclass
class _Affine:
    """``y = x * scale + shift`` per channel (axis 1); None means 1 or 0."""

    x: Value
    scale: np.ndarray | None
    shift: np.ndarray | None


class _Rewriter:
    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.nodes: list[Node | None] = list(graph.nodes)
        self.readers: dict[int, int] = {}
        for node in graph.walk():  # values read inside subgraphs count too
            for v in node.inputs:
                if v is not None:
                    self.readers[id(v)] = self.readers.get(id(v), 0) + 1
        self.pinned = {id(v) for v in graph.outputs}
        self.feeds = {id(v) for v in graph.real_inputs()}
        self.producer = {id(o): k for k, n in enumerate(graph.nodes) for o in n.outputs}
        self.stats = {"conv_batchnorm_folded": 0, "conv_affine_folded": 0,
                      "channel_affine_merged": 0}
        self.scales: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # standalone BN: (s, t)
        self.rank: dict[int, int] = {}

    def const(self, v: Value | None) -> np.ndarray | None:
        if v is None or id(v) in self.feeds or v.const is None:
            return None
        return np.asarray(v.const)

    def conv_of(self, x: Value) -> tuple[int, Node] | None:
        """The Conv producing ``x`` for nobody else, with constant float weights and bias."""
        k = self.producer.get(id(x))
        conv = self.nodes[k] if k is not None else None
        if conv is None or conv.op_type != "Conv" or conv.domain != "" or len(conv.inputs) < 2:
            return None
        if self.readers.get(id(x), 0) != 1 or id(x) in self.pinned:
            return None
        w = self.const(conv.inputs[1])
        b = conv.inputs[2] if len(conv.inputs) > 2 else None
        if w is None or w.dtype.kind != "f" or w.ndim < 3 or (
                b is not None and self.const(b) is None):
            return None
        return k, conv  # type: ignore[return-value]

    def affine(self, node: Node, channels: int, rank: int) -> _Affine | None:
        """``node`` as a per-channel affine map of its input, for ``channels`` on axis 1."""
        if node.domain != "" or len(node.outputs) != 1:
            return None
        if node.op_type == "BatchNormalization":
            if node.attrs.get("training_mode", 0) or len(node.inputs) < 5:
                return None
            params = [self.const(v) for v in node.inputs[1:5]]
            if any(p is None or p.shape != (channels,) for p in params):
                return None
            gamma, beta, mean, var = (np.asarray(p, dtype=np.float64) for p in params)
            a = gamma / np.sqrt(var + float(node.attrs.get("epsilon", 1e-5)))
            return _Affine(node.inputs[0], a, beta - mean * a)  # type: ignore[arg-type]
        if node.op_type not in AFFINE_BINARY or len(node.inputs) != 2:
            return None
        x, c = node.inputs
        if self.const(x) is not None and node.op_type in ("Mul", "Add"):
            x, c = c, x  # commutative: the constant may come first
        vec = _per_channel(self.const(c), channels, rank)
        if x is None or vec is None or self.const(x) is not None or (
                node.op_type == "Div" and not vec.all()):
            return None
        if node.op_type in ("Mul", "Div"):
            return _Affine(x, vec if node.op_type == "Mul" else 1.0 / vec, None)
        return _Affine(x, None, vec if node.op_type == "Add" else -vec)

    def fold_into_conv(self, index: int, node: Node) -> bool:
        runtime = [v for v in node.inputs[:2] if v is not None and self.const(v) is None]
        x = runtime[0] if len(runtime) == 1 else None
        found = self.conv_of(x) if x is not None else None
        if found is None:
            return False
        k, conv = found
        w = np.asarray(conv.inputs[1].const)  # type: ignore[union-attr]
        aff = self.affine(node, w.shape[0], w.ndim)
        if aff is None or aff.x is not x:
            return False
        bias = self.const(conv.inputs[2]) if len(conv.inputs) > 2 else None
        s = aff.scale if aff.scale is not None else np.ones(w.shape[0])
        base = bias.astype(np.float64) if bias is not None else np.zeros(w.shape[0])
        new_b = base * s + (aff.shift if aff.shift is not None else 0.0)
        new_w = w if aff.scale is None else \
            w.astype(np.float64) * s.reshape((-1,) + (1,) * (w.ndim - 1))
        out = node.outputs[0]
        self.nodes[k] = replace(conv, inputs=[
            conv.inputs[0], _const(f"{out.name}_w", new_w, w.dtype),
            _const(f"{out.name}_b", new_b, w.dtype)], outputs=[out])
        self.nodes[index] = None
        self.producer[id(out)] = k
        key = "conv_batchnorm_folded" if node.op_type == "BatchNormalization" else \
            "conv_affine_folded"
        self.stats[key] += 1
        return True

    def merge_into_scale(self, index: int, node: Node) -> bool:
        """Merge a per-channel Mul/Div/Add/Sub into the standalone scale+shift before it."""
        runtime = [v for v in node.inputs[:2] if v is not None and self.const(v) is None]
        k = self.producer.get(id(runtime[0])) if len(runtime) == 1 else None
        if k is None or k not in self.scales or self.readers.get(id(runtime[0]), 0) != 1 or \
                id(runtime[0]) in self.pinned:
            return False
        bn = self.nodes[k]
        scale, shift = self.scales[k]
        aff = self.affine(node, scale.shape[0], self.rank[k])
        if bn is None or aff is None or aff.x is not runtime[0]:
            return False
        s = aff.scale if aff.scale is not None else 1.0
        t = aff.shift if aff.shift is not None else 0.0
        self.scales[k] = (scale * s, shift * s + t)
        self.nodes[k] = _scale_shift(bn, *self.scales[k], node.outputs[0], self.rank[k])
        self.nodes[index] = None
        self.producer[id(node.outputs[0])] = k
        self.stats["channel_affine_merged"] += 1
        return True

    def as_scale(self, index: int, node: Node) -> None:
        """A standalone BatchNormalization as one scale+shift with its vectors computed here."""
        x = node.inputs[0]
        t = x.type if x is not None else None
        if node.op_type != "BatchNormalization" or t is None or t.shape is None or \
                len(t.shape) < 2 or not isinstance(t.shape[1], int):
            return
        aff = self.affine(node, t.shape[1], len(t.shape))
        if aff is None or aff.scale is None or aff.shift is None:
            return
        self.scales[index] = (aff.scale, aff.shift)
        self.rank[index] = len(t.shape)
        self.nodes[index] = _scale_shift(node, aff.scale, aff.shift, node.outputs[0],
                                         len(t.shape))

    def run(self) -> Graph:
        for index, node in enumerate(self.graph.nodes):
            if node.op_type in ("BatchNormalization", *AFFINE_BINARY) and not (
                    self.fold_into_conv(index, node) or self.merge_into_scale(index, node)):
                self.as_scale(index, node)
        if not any(self.stats.values()) and not self.scales:
            return self.graph
        return replace(self.graph, nodes=[n for n in self.nodes if n is not None])


def fold_channel_affine(graph: Graph) -> tuple[Graph, dict[str, int]]:
    """A new graph with per-channel affine steps folded (see module doc), and counts."""
    rewriter = _Rewriter(graph)
    return rewriter.run(), rewriter.stats


def _per_channel(c: np.ndarray | None, channels: int, rank: int) -> np.ndarray | None:
    """A float constant broadcast against a rank-``rank`` tensor as one value per axis-1
    channel (or one value in all), as a float64 vector of ``channels``; else None."""
    if c is None or c.dtype.kind != "f" or c.ndim > rank:
        return None
    shape = (1,) * (rank - c.ndim) + c.shape
    if any(d != 1 for k, d in enumerate(shape) if k != 1) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(c.astype(np.float64).reshape(-1), (channels,)).copy()


def _scale_shift(bn: Node, scale: np.ndarray, shift: np.ndarray, out: Value, rank: int
                 ) -> Node:
    """``y = x * scale + shift`` per channel. On NCHW (rank 4) a 1x1 depthwise Conv (MNN's
    Scale): a native kernel does it in one pass with an activation after it fused, where the
    decomposed form broadcast both vectors with per-run rasters. Otherwise an inference
    BatchNormalization with mean 0, variance 1 and epsilon 0, whose lowering then computes
    ``a = scale``, ``b = shift`` exactly."""
    dtype = np.asarray(bn.inputs[1].const).dtype  # type: ignore[union-attr]
    n = out.name
    if rank == 4:
        c = scale.shape[0]
        weight = _const(f"{n}_scale", scale.reshape(c, 1, 1, 1), dtype)
        return Node("Conv", [bn.inputs[0], weight, _const(f"{n}_shift", shift, dtype)], [out],
                    {"group": c, "kernel_shape": [1, 1]}, bn.domain, bn.name)
    params = [_const(f"{n}_scale", scale, dtype), _const(f"{n}_shift", shift, dtype),
              _const(f"{n}_mean", np.zeros_like(scale), dtype),
              _const(f"{n}_var", np.ones_like(scale), dtype)]
    return replace(bn, inputs=[bn.inputs[0], *params], outputs=[out],
                   attrs={"epsilon": 0.0})


def _const(name: str, data: np.ndarray, dtype: np.dtype) -> Value:
    from walle_core.ir import dtypes

    array = np.array(data, dtype=dtype, order="C")
    return Value(name, TensorType(dtypes.from_numpy(array.dtype), tuple(array.shape)), array)
