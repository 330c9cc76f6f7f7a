"""The conformance kit: one suite, every backend.

``run_conformance("reference")`` runs the ONNX backend test suite that ships with the ``onnx``
package (generated node cases plus the simple, PyTorch and light real models) through a
:class:`walle_core.Session` on the named backend and classifies every CPU case as passed,
failed or unsupported. A backend plugin's conformance test is a few lines::

    from walle_core.testing import assert_conformance
    def test_conformance():
        assert_conformance("opencl", minimum_passed=1200)
"""

from walle_core.testing.conformance import (
    CaseResult,
    ConformanceReport,
    assert_conformance,
    run_conformance,
)

__all__ = ["CaseResult", "ConformanceReport", "assert_conformance", "run_conformance"]
