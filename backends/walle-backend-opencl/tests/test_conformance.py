"""The whole ONNX backend suite (every CPU case, the 9 light models included) on OpenCL.

Runs in the default test session: on PoCL with warm caches it takes about a minute (README).
The minimum is what the reference backend passes on this suite (1935 of 2033). A Conv the native
OpenCL kernel does not run (float16, 3-D) is decomposed into device primitives rather than sent
whole to the host (``prefers_native_for``), which is also what the float16 expected outputs were
computed with.
"""

from __future__ import annotations

import pytest

MINIMUM = 1935
LIGHT = ("bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
         "shufflenet", "squeezenet", "vgg19", "zfnet512")


def test_conformance_full_suite(opencl) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("onnx")
    from walle_core.testing.conformance import run_conformance

    report = run_conformance("opencl")
    status = {c.name: c for c in report.cases}
    light = {n: status[f"test_{n}_cpu"].status for n in LIGHT}
    assert set(light.values()) == {"passed"}, light
    passed = report.counts["passed"]
    failed = [f"{c.name}: {c.message[:120]}" for c in report.cases if c.status == "failed"]
    assert passed >= MINIMUM, f"{passed} passed < {MINIMUM}; failures: {failed}"
