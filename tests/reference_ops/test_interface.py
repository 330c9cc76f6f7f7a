"""The calling convention the engine relies on."""

from __future__ import annotations

import numpy as np

from walle_core.reference_ops import get_kernel, supported_ops


def test_lookup_by_domain_alias() -> None:
    assert get_kernel("Add") is get_kernel("Add", "ai.onnx")
    assert ("", "Add") in supported_ops()
    assert get_kernel("NoSuchOp") is None


def test_kernel_call_convention() -> None:
    kernel = get_kernel("Softmax")
    assert kernel is not None
    x = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    (y,) = kernel([x], {}, 13)
    assert y.dtype == np.float32 and y.shape == (1, 3)
    np.testing.assert_allclose(y.sum(), 1.0, rtol=1e-6)


def test_subgraph_ops_are_not_kernels() -> None:
    for op in ("If", "Loop", "Scan"):
        assert get_kernel(op) is None
