"""The whole ONNX backend suite (every CPU case, the 9 light models included) on OpenCL.

Runs in the default test session: on PoCL with warm caches it takes about a minute (README).
The minimum is what the reference backend passes on this suite less one float16 case
(``test_causal_conv_with_state_silu_fp16_expanded``): OpenCL plans Conv natively, so a float16
Conv runs the reference's native Conv kernel (float64 accumulation) instead of the decomposed
im2col + float16 MatMul the expected output was made with, and differs by one float16 ulp.
"""

from __future__ import annotations

import pytest

MINIMUM = 1934
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
