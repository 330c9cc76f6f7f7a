"""The ONNX backend suite through the conformance kit, on a fast subset of op families.

The minimum is what PoCL passes today (measured: 175 of 175 cases); the full-suite figure is in
the README and runs with ``walle conformance --backend opencl --json``.
"""

from __future__ import annotations

import pytest

SUBSET = (r"^test_(add|mul|relu|matmul|gemm|reduce_sum_|reduce_max|transpose|concat|softmax_"
          r"|where|clip|cast_FLOAT_to|argmax)")


def test_conformance_subset(opencl) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("onnx")
    from walle_core.testing import assert_conformance

    assert_conformance("opencl", minimum_passed=175, pattern=SUBSET)
