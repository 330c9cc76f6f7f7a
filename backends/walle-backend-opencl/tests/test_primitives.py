"""Every primitive on the OpenCL device against the reference backend, on random inputs."""

from __future__ import annotations

import numpy as np
import pytest
from harness import compare, out_spec

from walle_core.ir import dtypes
from walle_core.ir.primitives import Cast, Elementwise, Loop, MatMul, Raster, Reduce, Region

RNG = np.random.default_rng(0)


def rand(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    if dtype == "bool":
        return RNG.random(shape) > 0.5
    if np.dtype(dtype).kind in "iu":
        return RNG.integers(-50 if np.dtype(dtype).kind == "i" else 0, 50, shape).astype(dtype)
    return RNG.standard_normal(shape).astype(dtype)


def test_kernels_not_fallbacks_for_common_steps(opencl) -> None:  # type: ignore[no-untyped-def]
    before = opencl.kernel_steps
    x = rand((4, 5), "float32")
    compare(opencl, Elementwise(("relu", ("in", 0))), [x], out_spec((4, 5), "float32"))
    assert opencl.kernel_steps == before + 1


EXPRS = [
    ("add", ("in", 0), ("in", 1)),
    ("mul", ("sigmoid", ("in", 0)), ("sub", ("in", 1), ("const", 0.5))),
    ("where", ("gt", ("in", 0), ("in", 1)), ("in", 0), ("const", 2)),
    ("clip", ("in", 0), ("const", -0.5), ("const", 0.5)),
    ("div", ("in", 0), ("in", 1)),
    ("mod", ("in", 0), ("in", 1)),
    ("max", ("abs", ("in", 0)), ("neg", ("in", 1))),
]


@pytest.mark.parametrize("dtype", ["float32", "int32", "int64"])
@pytest.mark.parametrize("expr", EXPRS, ids=[e[0] for e in EXPRS])
def test_elementwise(opencl, expr, dtype: str) -> None:  # type: ignore[no-untyped-def]
    a, b = rand((3, 7), dtype), rand((3, 7), dtype)
    if dtype != "float32" and expr[0] in ("div", "mod"):
        b[0, 0] = 0  # integer division by zero has a defined result in the reference
    compare(opencl, Elementwise(expr), [a, b], out_spec((3, 7), dtype))


def test_elementwise_float_functions_and_scalar_input(opencl) -> None:  # type: ignore[no-untyped-def]
    x = np.abs(rand((64,), "float32")) + 0.1
    s = np.array([0.7], dtype=np.float32)
    expr = ("add", ("add", ("log", ("in", 0)), ("tanh", ("mul", ("in", 0), ("in", 1)))),
            ("add", ("erf", ("in", 0)), ("softplus", ("sqrt", ("in", 0)))))
    compare(opencl, Elementwise(expr), [x, s], out_spec((64,), "float32"), rtol=1e-5, atol=1e-5)


def test_elementwise_mixed_dtypes_and_bool_output(opencl) -> None:  # type: ignore[no-untyped-def]
    a, b = rand((10,), "int32"), rand((10,), "float32")
    compare(opencl, Elementwise(("add", ("in", 0), ("in", 1))), [a, b], out_spec((10,), "float64"))
    compare(opencl, Elementwise(("lt", ("in", 0), ("in", 1))), [a, b], out_spec((10,), "bool"))
    m = rand((10,), "bool")
    compare(opencl, Elementwise(("and", ("in", 0), ("not", ("in", 1)))), [m, m[::-1].copy()],
            out_spec((10,), "bool"))


@pytest.mark.parametrize("src,dst", [("float32", "int32"), ("int64", "float32"),
                                     ("float32", "bool"), ("uint8", "float32")])
def test_cast(opencl, src: str, dst: str) -> None:  # type: ignore[no-untyped-def]
    x = rand((5, 6), src) * (3 if src != "bool" else 1)
    compare(opencl, Cast(dtypes.ALL[dst]), [x], out_spec((5, 6), dst))


def test_unsupported_dtype_falls_back(opencl) -> None:  # type: ignore[no-untyped-def]
    before = opencl.fallback_steps
    x = rand((8,), "float16")
    compare(opencl, Elementwise(("exp", ("in", 0))), [x], out_spec((8,), "float16"), rtol=1e-3)
    assert opencl.fallback_steps == before + 1


def transpose_region(rows: int, cols: int) -> Region:
    return Region(0, 0, (0, 1, cols), 0, (0, rows, 1), (1, cols, rows))


@pytest.mark.parametrize("dtype", ["float32", "int64", "uint8"])
def test_raster_transpose_and_concat(opencl, dtype: str) -> None:  # type: ignore[no-untyped-def]
    a, b = rand((6, 5), dtype), rand((4, 5), dtype)
    compare(opencl, Raster((transpose_region(6, 5),)), [a], out_spec((5, 6), dtype))
    concat = Raster((Region(0, 0, (0, 0, 1), 0, (0, 0, 1), (1, 1, 30)),
                     Region(1, 0, (0, 5, 1), 30, (0, 5, 1), (1, 4, 5))))
    compare(opencl, concat, [a, b], out_spec((10, 5), dtype))


def test_raster_fill_fused_regions_and_accumulate(opencl) -> None:  # type: ignore[no-untyped-def]
    a = rand((4, 4), "float32")
    pad = Raster((Region(0, 0, (0, 4, 1), 7, (0, 6, 1), (1, 4, 4)),), fill=-1.5)
    compare(opencl, pad, [a], out_spec((6, 6), "float32"))
    # several strided regions from one source in one launch (a 2x2 space-to-depth)
    regions = tuple(Region(0, 2 * di + dj, (0, 8, 2), (2 * di + dj) * 4, (0, 2, 1), (1, 2, 2))
                    for di in range(2) for dj in range(2))
    compare(opencl, Raster(regions), [a], out_spec((4, 4), "float32"))
    # overlapping accumulation keeps the sequential meaning
    acc = Raster((Region(0, 0, (0, 4, 1), 0, (0, 0, 1), (1, 4, 4)),
                  Region(0, 1, (0, 4, 1), 0, (0, 0, 1), (1, 3, 4))), fill=0, accumulate=True)
    compare(opencl, acc, [a], out_spec((4,), "float32"))


@pytest.mark.parametrize("op", ["sum", "mean", "max", "argmax", "argmin", "log_sum_exp", "l2"])
def test_reduce(opencl, op: str) -> None:  # type: ignore[no-untyped-def]
    x = rand((3, 4, 5), "float32")
    axes = (1,) if op.startswith("arg") else (0, 2)
    dtype = "int64" if op.startswith("arg") else "float32"
    shape = (3, 1, 5) if op.startswith("arg") else (1, 4, 1)
    compare(opencl, Reduce(op, axes), [x], out_spec(shape, dtype), rtol=1e-5, atol=1e-5)


def test_reduce_select_last_ties(opencl) -> None:  # type: ignore[no-untyped-def]
    x = np.array([[1, 3, 3, 0], [2, 2, 1, 2]], dtype=np.float32)
    compare(opencl, Reduce("argmax", (1,), keepdims=False, select_last=True), [x],
            out_spec((2,), "int64"))


MATMULS = [
    (MatMul(), (5, 7), (7, 3), None),
    (MatMul(trans_a=True, trans_b=True), (19, 33), (17, 19), None),
    (MatMul(trans_b=True, alpha=0.5, beta=2.0, activation="relu"), (20, 9), (18, 9), (18,)),
    (MatMul(activation="clip", act_params=(-0.5, 0.5)), (2, 3, 17, 8), (2, 3, 8, 5), (17, 1)),
    (MatMul(activation="sigmoid"), (3, 4, 6), (6, 2), ()),
]


@pytest.mark.parametrize("case", range(len(MATMULS)))
def test_matmul(opencl, case: int) -> None:  # type: ignore[no-untyped-def]
    prim, sa, sb, sbias = MATMULS[case]
    a, b = rand(sa, "float32"), rand(sb, "float32")
    bias = None if sbias is None else rand(sbias, "float32")
    x = np.swapaxes(a, -1, -2) if prim.trans_a else a
    y = np.swapaxes(b, -1, -2) if prim.trans_b else b
    shape = np.matmul(x, y).shape
    before = opencl.kernel_steps
    compare(opencl, prim, [a, b, bias], out_spec(shape, "float32"), rtol=1e-4, atol=1e-5)
    assert opencl.kernel_steps == before + 1


def test_loop_scatter_add_runs_on_host(opencl) -> None:  # type: ignore[no-untyped-def]
    base = rand((6, 3), "float32")
    src = rand((4, 3), "float32")
    idx = np.array([0, 5, 0, 2], dtype=np.int64)
    prim = Loop(count=4, region=Region(1, 0, (0, 0, 1), 0, (0, 0, 1), (1, 1, 3)),
                has_base=True, has_dst_offsets=True, src_step=3, reduction="add")
    compare(opencl, prim, [base, src, None, idx * 3], out_spec((6, 3), "float32"))


@pytest.mark.parametrize("index_dtype", ["int64", "int32"])
def test_loop_gather_on_device(opencl, index_dtype: str) -> None:  # type: ignore[no-untyped-def]
    table = rand((7, 4), "float32")
    idx = np.array([6, 0, 3, 3, 1], dtype=index_dtype)
    prim = Loop(count=5, region=Region(0, 0, (0, 0, 1), 0, (0, 0, 1), (1, 1, 4)),
                has_src_offsets=True, dst_step=4)
    before = opencl.kernel_steps
    compare(opencl, prim, [None, table, (idx * 4).astype(index_dtype)], out_spec((5, 4), "float32"))
    assert opencl.kernel_steps == before + 1
    strided = Loop(count=3, region=Region(0, 1, (0, 0, 2), 1, (0, 0, 1), (1, 1, 2)),
                   src_step=8, dst_step=3, fill=-1)
    compare(opencl, strided, [None, table], out_spec((3, 3), "float32"))


def test_loop_gather_out_of_range_raises(opencl) -> None:  # type: ignore[no-untyped-def]
    from harness import run

    from walle_core.ir.errors import ExecutionError

    prim = Loop(count=2, region=Region(0, 0, (0, 0, 1), 0, (0, 0, 1), (1, 1, 4)),
                has_src_offsets=True, dst_step=4)
    with pytest.raises(ExecutionError, match="out of range"):
        run(opencl, prim, [None, rand((3, 4), "float32"), np.array([0, 40])],
            out_spec((2, 4), "float32"))
