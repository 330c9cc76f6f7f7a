"""Channels-last chains: Convs that run on ``[N, H, W, C]`` activations between each other.

A depthwise Conv on NCHW loops over each channel's plane; at MobileNet's 14x14 and 7x7
stages that plane is a vector or two, and the loop is mostly overhead. On channels-last
tensors the same Conv is one vector loop over channels per output pixel, and a 1x1 Conv is a
GEMM whose vectors run over output channels: what onnxruntime's NCHWc and MNN's NC4HW4 do.

This pass rewrites, in a planned program, connected chains of such Convs (joined by the
tensors one produces and the next reads, as input or as fused residual) to channels-last:

- Each converted Conv step gets ``attrs["layout"] = "NHWC"``: its input, residual and output
  are ``[N, H, W, C]`` slots, and its weights a new constant ``[KH, KW, C/G, M]`` ("HWIO").
  Bias and fused activation are unchanged.
- Where a chain begins, one Raster transposes NCHW -> NHWC (once per source tensor, however
  many converted Convs read it); where a converted Conv's output is also read by anything
  else, or is a graph output, one Raster transposes it back into the original NCHW slot.
  Raster fusion afterwards folds those transposes into adjacent Rasters where it can.

Which Convs qualify (``convertible``): float32 2-D Convs with constant weights, no dilation,
and either depthwise (one input channel per group, any kernel and stride), group-1 1x1 (any
stride), or a group-1 "stem" with at most ``STEM_CHANNELS`` input channels, which reads its
NCHW input as it is (``attrs["input_layout"] = "NCHW"``) and so starts a chain without an
entry transpose. A chain is converted only when it has at least two Convs and one of them is
a spatial depthwise Conv (a 1x1 one, a BatchNorm folded into a Conv, does not count): that
is where channels-last pays (measured on MobileNetV2's blocks: 1.4-2.2x faster than the
NCHW kernels); a chain of 1x1 Convs alone gains nothing (DenseNet-121's 61 BatchNorm + 1x1
pairs would each add two transposes), and dense 3x3 Convs stay NCHW, where Winograd and the
NCHW micro-kernel measured 1.2-2x faster than channels-last im2col.

The session runs the pass only when every backend that runs Conv natively declares
``channels_last_ops()`` for it (numba and the reference do; GPU backends do not), and only
for host memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from walle_core.geometry.fusion import consumers, fuse_rasters
from walle_core.ir.primitives import Kernel, Raster, Region, Step, TensorSpec

NHWC = "NHWC"
#: A group-1 Conv with at most this many input channels (an RGB stem) may start a chain: it
#: reads its NCHW input directly and writes NHWC (``attrs["input_layout"] = "NCHW"``), so the
#: chain needs no entry transpose (MobileNetV2: stem 280 us + transpose 160-230 us -> 137 us).
STEM_CHANNELS = 4


def convertible(step: Step, slots: list[TensorSpec], consts: dict[int, Any]) -> str | None:
    """``"depthwise"`` / ``"affine"`` (1x1 depthwise) / ``"pointwise"`` / ``"stem"`` when this
    Conv step may run channels-last, else None."""
    prim = step.prim
    if not isinstance(prim, Kernel) or (prim.domain, prim.op_type) != ("", "Conv") or \
            prim.attrs.get("layout") or len(step.outputs) != 1:
        return None
    ins = step.inputs
    if len(ins) < 2 or ins[0] < 0 or ins[1] < 0 or ins[1] not in consts:
        return None
    x, w, y = slots[ins[0]], slots[ins[1]], slots[step.outputs[0]]
    if len(x.shape) != 4 or len(w.shape) != 4 or len(y.shape) != 4 or \
            any(s.dtype.name != "float32" for s in (x, w, y)):
        return None
    if not isinstance(consts[ins[1]], np.ndarray):
        return None
    attrs = prim.attrs
    if any(int(d) != 1 for d in (attrs.get("dilations") or (1, 1))):
        return None
    g = int(attrs.get("group", 1))
    c, m = x.shape[1], w.shape[0]
    if g == c == m and w.shape[1] == 1:
        # a 1x1 depthwise Conv is a per-channel scale and shift (DenseNet's BatchNorms): it
        # may join a chain but is no reason for one
        return "depthwise" if w.shape[2:] != (1, 1) else "affine"
    if g == 1 and w.shape[2:] == (1, 1):
        return "pointwise"
    if g == 1 and c <= STEM_CHANNELS:
        return "stem"
    return None


def _transpose(n: int, c: int, hw: int, to_nhwc: bool) -> Raster:
    """One region: [n, c, hw] -> [n, hw, c] (``to_nhwc``) or back."""
    nchw = (c * hw, hw, 1)
    nhwc = (hw * c, 1, c)
    src, dst = (nchw, nhwc) if to_nhwc else (nhwc, nchw)
    return Raster((Region(0, 0, src, 0, dst, (n, c, hw)),))


GLOBAL_POOLS = ("GlobalAveragePool", "GlobalMaxPool")
NOTHING = {"channels_last_convs": 0, "channels_last_pools": 0, "layout_transposes": 0}


def _residual(step: Step) -> list[int]:
    """The fused residual input of a Conv step (``attrs["fused_add"]``), as a list."""
    fused = step.prim.attrs.get("fused_add")  # type: ignore[attr-defined]
    return [step.inputs[3]] if fused and len(step.inputs) > 3 else []


def channels_last(program: Any, protected: set[int],
                  retire: Callable[[np.ndarray, np.ndarray], None] | None = None,
                  ops: set[tuple[str, str]] | None = None) -> dict[str, int]:
    """Convert the program's qualifying Conv chains in place; returns counts for the stats.

    ``retire(old, view)`` is called for each OIHW weight array the program no longer reads
    once its HWIO copy exists, with ``view``: the same values as ``old`` but a view of the
    HWIO copy. The session swaps its graph's constant for the view, so the original can be
    freed at once (weights are not held twice) and a later plan that wants OIHW still has
    them (transposing the view back to HWIO gives the contiguous copy itself, no new one).

    ``ops``: the ops every backend runs channels-last (default: Conv only). With
    GlobalAveragePool / GlobalMaxPool among them, a global pool reading a chain's output
    reads it channels-last (``attrs["layout"] = "NHWC"``) and writes its usual [N, C, 1, 1]
    output, the same bytes in either layout: the chain needs no exit transpose there."""
    builder = program.builder
    steps: list[Step] = builder.steps
    slots: list[TensorSpec] = builder.slots
    consts: dict[int, Any] = builder.consts
    placed = set(program.aliases) | set(program.aliases.values())
    kind: dict[int, str] = {}
    for k, step in enumerate(steps):
        found = convertible(step, slots, consts)
        if found is None:
            continue
        if not any(s in placed for s in (step.inputs[0], step.outputs[0], *_residual(step))):
            kind[k] = found
    if not kind:
        return dict(NOTHING)
    producer = {s: k for k, st in enumerate(steps) for s in st.outputs}

    def activations(k: int) -> list[int]:
        """The activation slots step ``k`` reads channels-last (a stem's input stays NCHW)."""
        st = steps[k]
        return ([] if kind[k] == "stem" else [st.inputs[0]]) + _residual(st)

    parent = {k: k for k in kind}

    def find(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for k in kind:
        for s in activations(k):
            p = producer.get(s)
            if p is not None and p in kind:
                parent[find(p)] = find(k)
    groups: dict[int, list[int]] = {}
    for k in kind:
        groups.setdefault(find(k), []).append(k)
    chosen = {k for members in groups.values() if len(members) >= 2 and
              any(kind[k] == "depthwise" for k in members) for k in members}
    if not chosen:
        return dict(NOTHING)

    # global pools reading a chain's output read it channels-last
    chain_out = {steps[k].outputs[0] for k in chosen}
    pools = {k for k, st in enumerate(steps)
             if isinstance(st.prim, Kernel) and st.prim.domain == "" and
             st.prim.op_type in GLOBAL_POOLS and ("", st.prim.op_type) in (ops or set()) and
             len(st.inputs) == 1 and st.inputs[0] in chain_out and len(st.outputs) == 1 and
             len(slots[st.inputs[0]].shape) == 4 and st.prim.attrs.get("layout") is None}
    # which outputs of converted Convs something else reads in NCHW (or the caller sees)
    readers: dict[int, int] = consumers(steps)
    nhwc_reads: dict[int, int] = {}
    for k in chosen:
        for s in activations(k):
            nhwc_reads[s] = nhwc_reads.get(s, 0) + 1
    for k in pools:
        s = steps[k].inputs[0]
        nhwc_reads[s] = nhwc_reads.get(s, 0) + 1
    # readers of each weight slot that stay NCHW (a weight shared with an unconverted Conv
    # keeps its OIHW array too)
    weight_readers: dict[int, int] = {}
    for k, st in enumerate(steps):
        if k not in chosen:
            for s in st.inputs:
                if s in consts:
                    weight_readers[s] = weight_readers.get(s, 0) + 1
    twin: dict[int, int] = {}  # NCHW slot -> its NHWC slot
    weights: dict[int, int] = {}  # OIHW weight slot -> its HWIO constant slot
    transposes = 0
    out: list[Step] = []

    def nhwc_slot(s: int) -> int:
        spec = slots[s]
        n, c, h, w = spec.shape
        return builder.new_slot((n, h, w, c), spec.dtype)

    for k, step in enumerate(steps):
        if k in pools:
            pool = step.prim
            assert isinstance(pool, Kernel)
            out.append(Step(Kernel(pool.op_type, pool.domain, {**pool.attrs, "layout": NHWC},
                                   pool.opset), [twin[step.inputs[0]]], list(step.outputs),
                            step.origin))
            continue
        if k not in chosen:
            out.append(step)
            continue
        reads = activations(k)
        for s in reads:
            if s not in twin:  # a chain begins here: transpose once, before the first reader
                twin[s] = nhwc_slot(s)
                n, c, h, w = slots[s].shape
                out.append(Step(_transpose(n, c, h * w, True), [s], [twin[s]], step.origin))
                transposes += 1
        wslot = step.inputs[1]
        if wslot not in weights:
            hwio = np.ascontiguousarray(np.asarray(consts[wslot]).transpose(2, 3, 1, 0))
            weights[wslot] = builder.const_slot(hwio)
            if retire is not None and weight_readers.get(wslot, 0) == 0:
                old = consts.pop(wslot)  # no step reads the OIHW slot any more
                retire(old, hwio.transpose(3, 2, 0, 1))
        prim = step.prim
        assert isinstance(prim, Kernel)
        inputs = list(step.inputs)
        attrs = {**prim.attrs, "layout": NHWC}
        if kind[k] == "stem":
            attrs["input_layout"] = "NCHW"
        else:
            inputs[0] = twin[inputs[0]]
        inputs[1] = weights[wslot]
        if _residual(step):
            inputs[3] = twin[inputs[3]]
        y = step.outputs[0]
        twin[y] = nhwc_slot(y)
        out.append(Step(Kernel(prim.op_type, prim.domain, attrs, prim.opset), inputs,
                        [twin[y]], step.origin))
        if y in protected or readers.get(y, 0) > nhwc_reads.get(y, 0):
            n, c, h, w = slots[y].shape
            out.append(Step(_transpose(n, c, h * w, False), [twin[y]], [y], step.origin))
            transposes += 1
    builder.steps = out
    fuse_rasters(builder.steps, slots, program.aliases)
    return {"channels_last_convs": len(chosen), "channels_last_pools": len(pools),
            "layout_transposes": transposes}
