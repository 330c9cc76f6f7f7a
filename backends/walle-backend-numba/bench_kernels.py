"""Kernel timings: numba backend vs numpy (the reference backend) vs onnxruntime, per op shape.

Run: ``NUMBA_NUM_THREADS=2 python backends/walle-backend-numba/bench_kernels.py [threads]``.
Each case is one primitive step compiled by both walle backends, and the equivalent single-node
ONNX model in onnxruntime; prints the median of repeated runs in microseconds and the ratios.
Not a test: timings on a shared machine are noisy, read the ratios, not the digits.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from walle_backend_numba import NumbaBackend

from walle_core.ir.dtypes import from_numpy
from walle_core.ir.primitives import (
    Elementwise,
    Kernel,
    MatMul,
    Raster,
    Reduce,
    Region,
    Step,
    TensorSpec,
)
from walle_core.reference_backend import ReferenceBackend

RNG = np.random.default_rng(0)


def rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def median_us(fn: Callable[[], Any], budget: float = 0.4) -> float:
    fn()
    times = []
    end = time.perf_counter() + budget
    while time.perf_counter() < end or len(times) < 5:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def step_time(backend: Any, prim: Any, ins: list[np.ndarray | None], out: tuple[int, ...]) -> float:
    specs = [TensorSpec(a.shape, from_numpy(a.dtype)) if a is not None else None for a in ins]
    ospec = TensorSpec(out, from_numpy(np.float32))
    fn = backend.compile(Step(prim, list(range(len(ins))), [len(ins)]), specs, [ospec])
    bufs = [backend.constant(a) if a is not None else None for a in ins]
    y = np.empty(out, np.float32)
    return median_us(lambda: fn(bufs, [y]))


def ort_time(node: Any, ins: dict[str, np.ndarray], inits: dict[str, np.ndarray],
             out: tuple[int, ...], threads: int) -> float:
    import onnxruntime as ort

    graph = helper.make_graph(
        [node], "bench",
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in ins.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])
    return median_us(lambda: sess.run(None, ins))


def cases() -> list[tuple[str, Any, list[Any], tuple[int, ...], Any, dict[str, Any]]]:
    """(name, primitive, inputs, output shape, onnx node, inits split off the inputs)."""
    out = []
    a, b, bias = rand(256, 512), rand(512, 512), rand(512)
    out.append(("gemm 256x512x512 +bias relu", MatMul(activation="relu"), [a, b, bias],
                (256, 512), helper.make_node("FusedGemm", ["a", "b", "c"], ["y"],
                                             domain="com.microsoft", activation="Relu"),
                {"b": b, "c": bias}))
    conv_cases = [("conv3x3 64->64 56x56", (1, 64, 56, 56), (64, 64, 3, 3), 1, (1, 1, 1, 1)),
                  ("conv1x1 64->256 56x56", (1, 64, 56, 56), (256, 64, 1, 1), 1, (0, 0, 0, 0)),
                  ("dwconv3x3 144 56x56", (1, 144, 56, 56), (144, 1, 3, 3), 144, (1, 1, 1, 1))]
    for name, xs, ws, g, pads in conv_cases:
        x, w, cb = rand(*xs), rand(*ws), rand(ws[0])
        attrs = {"group": g, "pads": list(pads), "kernel_shape": list(ws[2:])}
        out.append((name, Kernel("Conv", "", attrs, 17), [x, w, cb], (1, ws[0], 56, 56),
                    helper.make_node("Conv", ["a", "b", "c"], ["y"], **attrs),
                    {"b": w, "c": cb}))
    x = rand(1, 64, 112, 112)
    out.append(("sigmoid 1x64x112x112", Elementwise(("sigmoid", ("in", 0))), [x], x.shape,
                helper.make_node("Sigmoid", ["a"], ["y"]), {}))
    x = rand(128, 768)
    out.append(("reduce mean last axis 128x768", Reduce("mean", (1,)), [x], (128, 1),
                helper.make_node("ReduceMean", ["a"], ["y"], axes=[1]), {}))
    x = rand(64, 3136)
    region = Region(0, 0, (0, 1, 3136), 0, (0, 64, 1), (1, 3136, 64))
    out.append(("transpose 64x3136", Raster((region,)), [x], (3136, 64),
                helper.make_node("Transpose", ["a"], ["y"], perm=[1, 0]), {}))
    return out


def main() -> None:
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    numba_backend, reference = NumbaBackend(threads=threads), ReferenceBackend()
    print(f"{'case':32} {'numba us':>10} {'numpy us':>10} {'ort us':>10} "
          f"{'numba/numpy':>12} {'numba/ort':>10}")
    for name, prim, ins, shape, node, inits in cases():
        t_numba = step_time(numba_backend, prim, ins, shape)
        t_numpy = step_time(reference, prim, ins, shape)
        feeds = {"a": ins[0]}
        try:
            t_ort = ort_time(node, feeds, inits, shape, threads)
        except Exception as exc:  # noqa: BLE001 - an op ort lacks: print without it
            print(f"  (onnxruntime: {type(exc).__name__}: {str(exc)[:120]})")
            t_ort = float("nan")
        print(f"{name:32} {t_numba:10.0f} {t_numpy:10.0f} {t_ort:10.0f} "
              f"{t_numba / t_numpy:12.2f} {t_numba / t_ort:10.2f}")


if __name__ == "__main__":
    main()
