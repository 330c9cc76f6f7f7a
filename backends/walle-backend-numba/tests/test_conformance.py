"""The whole ONNX backend suite on numba passes at least what the reference backend passes.

Floor measured with ``walle conformance --backend reference`` (1935 of 2033 cases; the others
are ops the engine does not support or reference failures); numba must not do worse.
"""

from __future__ import annotations

import pytest

REFERENCE_PASSED = 1935


@pytest.mark.slow
def test_conformance_equal_to_reference() -> None:
    pytest.importorskip("onnx")
    from walle_core.testing import assert_conformance

    assert_conformance("numba", minimum_passed=REFERENCE_PASSED)
