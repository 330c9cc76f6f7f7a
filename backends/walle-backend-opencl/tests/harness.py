"""Run one primitive on a backend from numpy inputs, the way a session does (arena + views)."""

from __future__ import annotations

from typing import Any

import numpy as np

from walle_core.ir import dtypes
from walle_core.ir.primitives import Primitive, Step, TensorSpec
from walle_core.reference_backend import ReferenceBackend

REFERENCE = ReferenceBackend()


def spec(array: np.ndarray) -> TensorSpec:
    return TensorSpec(tuple(array.shape), dtypes.ALL[np.dtype(array.dtype).name])


def run(backend: Any, prim: Primitive, ins: list[np.ndarray | None],
        out: TensorSpec, init: np.ndarray | None = None) -> np.ndarray:
    """Inputs live in one arena at odd-ish offsets (as planned tensors do); the output too."""
    specs = [None if a is None else spec(a) for a in ins]
    offsets, cursor = [], 8
    for s in [*specs, out]:
        offsets.append(cursor)
        cursor += (0 if s is None else s.nbytes) + 8
    arena = backend.allocate(cursor)
    bufs = [None if s is None else backend.view(arena, o, s)
            for s, o in zip(specs, offsets, strict=False)]
    out_buf = backend.view(arena, offsets[-1], out)
    for a, b in zip(ins, bufs, strict=True):
        if a is not None:
            backend.upload(a, b)
    backend.upload(np.zeros(out.shape, out.dtype.np) if init is None else init, out_buf)
    step = Step(prim, list(range(len(ins))), [len(ins)])
    backend.compile(step, specs, [out])(bufs, [out_buf])
    backend.sync()
    return backend.download(out_buf)


def compare(backend: Any, prim: Primitive, ins: list[np.ndarray | None], out: TensorSpec,
            rtol: float = 1e-5, atol: float = 1e-6, init: np.ndarray | None = None) -> None:
    got = run(backend, prim, ins, out, init)
    want = run(REFERENCE, prim, ins, out, init)
    assert got.dtype == want.dtype and got.shape == want.shape
    if want.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    else:
        np.testing.assert_array_equal(got, want)


def out_spec(shape: tuple[int, ...], dtype: str) -> TensorSpec:
    return TensorSpec(shape, dtypes.ALL[dtype])
