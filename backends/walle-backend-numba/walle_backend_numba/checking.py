"""Comparing the numba backend with the reference backend, step by step.

Used by this distribution's tests and by bench_kernels.py: run one primitive on both backends
with the same inputs and return both outputs. Imports the tensor engine, so call it only where
the engine exists (``ENGINE`` says whether it does).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _engine_present() -> bool:
    try:
        import walle_core.ir.primitives  # noqa: F401
        import walle_core.reference_backend  # noqa: F401
        from walle_core.backend import ExecutionBackend  # noqa: F401
    except ImportError:
        return False
    return True


ENGINE = _engine_present()


def spec(a: np.ndarray) -> Any:
    from walle_core.ir.dtypes import from_numpy
    from walle_core.ir.primitives import TensorSpec

    return TensorSpec(tuple(a.shape), from_numpy(a.dtype))


def run_both(prim: Any, ins: list[np.ndarray | None], out_shapes: list[tuple[int, ...]],
             out_dtypes: list[Any]) -> tuple[list[np.ndarray], list[np.ndarray], bool]:
    """Outputs from (numba, reference), and whether numba used a kernel (not numpy)."""
    from walle_backend_numba import NumbaBackend
    from walle_core.ir.dtypes import from_numpy
    from walle_core.ir.primitives import Step, TensorSpec
    from walle_core.reference_backend import ReferenceBackend

    in_specs = [spec(a) if a is not None else None for a in ins]
    out_specs = [TensorSpec(s, from_numpy(d)) for s, d in zip(out_shapes, out_dtypes, strict=True)]
    step = Step(prim, list(range(len(ins))), [len(ins) + i for i in range(len(out_shapes))])
    results = []
    fast = False
    for backend in (NumbaBackend(threads=2), ReferenceBackend()):
        before = getattr(backend, "compiled_steps", 0)
        fn = backend.compile(step, in_specs, out_specs)
        outs = [np.full(s.shape, 7, dtype=s.dtype.np) for s in out_specs]
        fn([backend.constant(a) if a is not None else None for a in ins], outs)
        results.append(outs)
        fast = fast or getattr(backend, "compiled_steps", 0) > before
    return results[0], results[1], fast


def assert_close(got: np.ndarray, want: np.ndarray, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    if got.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    else:
        np.testing.assert_array_equal(got, want)
