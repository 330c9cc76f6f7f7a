"""Run the kernels over the ONNX backend node test suite and print pass/fail counts.

``python -m walle_core.reference_ops.coverage [-v] [--filter SUBSTR]``

Each case is a small graph (one node, or an ``_expanded`` function body); nodes run in order
through :func:`walle_core.reference_ops.get_kernel`. A case whose graph uses an op without a
kernel (or a subgraph op) counts as unsupported. Outputs are compared like onnx's backend runner:
same dtype, then ``assert_allclose(rtol=1e-3, atol=1e-7)`` (exact for strings).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from walle_core.reference_ops import get_kernel
from walle_core.reference_ops.onnx_attrs import decode_attributes, opset_for
from walle_core.reference_ops.suite import node_data_dir

RTOL, ATOL = 1e-3, 1e-7


@dataclass
class CaseResult:
    name: str
    status: str  # "pass" | "fail" | "unsupported"
    detail: str = ""


def _read_value(path: Path, type_proto: onnx.TypeProto) -> Any:
    data = path.read_bytes()
    if type_proto.HasField("sequence_type"):
        seq = onnx.SequenceProto()
        seq.ParseFromString(data)
        return numpy_helper.to_list(seq)
    if type_proto.HasField("optional_type"):
        opt = onnx.OptionalProto()
        opt.ParseFromString(data)
        return numpy_helper.to_optional(opt)
    tensor = onnx.TensorProto()
    tensor.ParseFromString(data)
    return numpy_helper.to_array(tensor)


def load_case(case_dir: Path) -> tuple[onnx.ModelProto, list[Any], list[Any]]:
    model = onnx.load(str(case_dir / "model.onnx"))
    data = case_dir / "test_data_set_0"
    graph = model.graph
    inputs = [_read_value(data / f"input_{i}.pb", vi.type) for i, vi in enumerate(graph.input)]
    outputs = [
        _read_value(data / f"output_{i}.pb", vi.type) for i, vi in enumerate(graph.output)
    ]
    return model, inputs, outputs


def missing_ops(model: onnx.ModelProto) -> list[str]:
    """Ops of the graph without a kernel (subgraph-carrying nodes count as missing)."""
    out = []
    for node in model.graph.node:
        has_graph = any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                        for a in node.attribute)
        if has_graph or get_kernel(node.op_type, node.domain) is None:
            out.append(f"{node.domain + '.' if node.domain else ''}{node.op_type}")
    return out


def run_graph(model: onnx.ModelProto, inputs: list[Any]) -> list[Any]:
    env: dict[str, Any] = {vi.name: v for vi, v in zip(model.graph.input, inputs, strict=True)}
    for init in model.graph.initializer:
        env[init.name] = numpy_helper.to_array(init)
    for node in model.graph.node:
        kernel = get_kernel(node.op_type, node.domain)
        if kernel is None:
            raise NotImplementedError(node.op_type)
        args = [env[n] if n else None for n in node.input]
        attrs = decode_attributes(node)
        attrs["_n_outputs"] = len(node.output)
        results = kernel(args, attrs, opset_for(model, node.domain))
        for name, value in zip(node.output, results, strict=False):
            if name:
                env[name] = value
    return [env[vi.name] for vi in model.graph.output]


def _as_comparable(a: np.ndarray) -> np.ndarray:
    if a.dtype.kind == "V" or "float8" in str(a.dtype) or "float4" in str(a.dtype):
        return a.astype(np.float32)
    if a.dtype.kind in "iu" and a.dtype.itemsize < 1:  # int4 types
        return a.astype(np.int32)
    if str(a.dtype) in ("int4", "uint4", "int2", "uint2", "bfloat16"):
        return a.astype(np.float32)
    return a


def compare(expected: Any, actual: Any, where: str = "output") -> None:
    """Raise AssertionError if ``actual`` differs from ``expected`` as the onnx runner judges."""
    if isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: expected a sequence, got {type(actual)}"
        assert len(expected) == len(actual), f"{where}: length {len(actual)} != {len(expected)}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            compare(e, a, f"{where}[{i}]")
        return
    if expected is None:
        assert actual is None, f"{where}: expected None"
        return
    assert isinstance(actual, np.ndarray | np.generic), f"{where}: got {type(actual)}"
    actual = np.asarray(actual)
    assert actual.dtype == expected.dtype, f"{where}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{where}: shape {actual.shape} != {expected.shape}"
    if expected.dtype == object or expected.dtype.kind in "SUb":
        np.testing.assert_array_equal(actual, expected, err_msg=where)
    else:
        np.testing.assert_allclose(
            _as_comparable(actual), _as_comparable(expected), rtol=RTOL, atol=ATOL, err_msg=where
        )


def run_case(case_dir: Path) -> CaseResult:
    model, inputs, expected = load_case(case_dir)
    missing = missing_ops(model)
    if missing:
        return CaseResult(case_dir.name, "unsupported", ",".join(sorted(set(missing))))
    try:
        with np.errstate(all="ignore"):
            actual = run_graph(model, inputs)
        assert len(actual) == len(expected), "output count"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            compare(e, a, f"output {i}")
    except Exception as exc:  # noqa: BLE001  (a failing kernel is a result, not a crash)
        msg = str(exc).strip().splitlines()
        return CaseResult(case_dir.name, "fail", f"{type(exc).__name__}: {' '.join(msg[:4])}")
    return CaseResult(case_dir.name, "pass")


def case_dirs(filter_text: str = "") -> list[Path]:
    root = node_data_dir()
    assert root is not None
    return sorted(p.parent for p in root.glob("test_*/model.onnx") if filter_text in p.parent.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="show failure details")
    parser.add_argument("--filter", default="", help="only cases whose name contains this")
    parser.add_argument("--unsupported", action="store_true", help="list unsupported cases")
    args = parser.parse_args(argv)
    results = [run_case(d) for d in case_dirs(args.filter)]
    by = {s: [r for r in results if r.status == s] for s in ("pass", "fail", "unsupported")}
    supported = len(by["pass"]) + len(by["fail"])
    print(f"cases total:     {len(results)}")
    print(f"supported:       {supported}")
    share = 100 * len(by["pass"]) / max(1, len(results))
    print(f"passed:          {len(by['pass'])}  ({share:.1f}% of total)")
    print(f"failed:          {len(by['fail'])}")
    print(f"unsupported:     {len(by['unsupported'])}")
    for r in by["fail"]:
        print(f"FAIL {r.name}" + (f"  {r.detail[:300]}" if args.verbose else ""))
    if args.unsupported:
        for r in by["unsupported"]:
            print(f"UNSUPPORTED {r.name}  [{r.detail}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
