"""Graph rewrites before planning, on the IR as loaded.

``fold_conv_batchnorm``: an inference ``BatchNormalization`` right after a ``Conv`` (the only
reader of the Conv's output), with constant weights and statistics, is folded into the Conv:
``W' = W * a`` and ``b' = b * a + (beta - mean * a)`` per output channel, with
``a = gamma / sqrt(var + eps)``. The model then does one pass over the activations instead of
two, whatever backend runs the Conv.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from walle_core.ir.graph import Graph, Node, Value


def fold_conv_batchnorm(graph: Graph) -> tuple[Graph, int]:
    """A new graph with Conv+BatchNormalization pairs folded, and how many were folded."""
    readers: dict[int, int] = {}
    for node in graph.nodes:
        for v in node.inputs:
            if v is not None:
                readers[id(v)] = readers.get(id(v), 0) + 1
    for node in graph.walk():  # values read inside subgraphs count too
        if node not in graph.nodes:
            for v in node.inputs:
                if v is not None:
                    readers[id(v)] = readers.get(id(v), 0) + 1
    outputs = {id(v) for v in graph.outputs}
    feeds = {id(v) for v in graph.inputs}
    producer = {id(o): n for n in graph.nodes for o in n.outputs}

    def const(v: Value | None) -> np.ndarray | None:
        if v is None or id(v) in feeds or v.const is None:
            return None
        return np.asarray(v.const)

    replaced: dict[int, Node] = {}  # id(conv) -> folded conv
    dropped: set[int] = set()  # id(bn)
    for bn in graph.nodes:
        if bn.op_type != "BatchNormalization" or bn.domain != "" or len(bn.outputs) != 1:
            continue
        if bn.attrs.get("training_mode", 0):
            continue
        x = bn.inputs[0]
        conv = producer.get(id(x)) if x is not None else None
        if conv is None or conv.op_type != "Conv" or conv.domain != "" or id(conv) in replaced:
            continue
        if readers.get(id(x), 0) != 1 or id(x) in outputs:
            continue
        w = const(conv.inputs[1] if len(conv.inputs) > 1 else None)
        b = conv.inputs[2] if len(conv.inputs) > 2 else None
        bias = const(b) if b is not None else None
        params = [const(v) for v in bn.inputs[1:5]]
        if w is None or (b is not None and bias is None) or any(p is None for p in params):
            continue
        if w.dtype.kind != "f" or w.ndim < 3:
            continue
        gamma, beta, mean, var = (np.asarray(p, dtype=np.float64) for p in params)
        if gamma.shape != (w.shape[0],):
            continue
        a = gamma / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
        new_w = (w.astype(np.float64) * a.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
        base = bias.astype(np.float64) if bias is not None else 0.0
        new_b = (base * a + beta - mean * a).astype(w.dtype)
        wv = Value(f"{conv.inputs[1].name}_bnfold", conv.inputs[1].type, new_w)  # type: ignore[union-attr]
        bv = Value(f"{bn.outputs[0].name}_bnfold_bias", None, new_b)
        replaced[id(conv)] = replace(conv, inputs=[conv.inputs[0], wv, bv],
                                     outputs=list(bn.outputs))
        dropped.add(id(bn))
    if not replaced:
        return graph, 0
    nodes = [replaced.get(id(n), n) for n in graph.nodes if id(n) not in dropped]
    return replace(graph, nodes=nodes), len(replaced)
