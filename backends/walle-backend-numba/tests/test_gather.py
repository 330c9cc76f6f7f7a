"""The numba Loop (gather/scatter without reduction) matches the reference numpy kernel."""

from __future__ import annotations

import numpy as np
import pytest
from walle_backend_numba.checking import ENGINE, assert_close, run_both

pytestmark = pytest.mark.skipif(not ENGINE, reason="the tensor engine is not in this core")
RNG = np.random.default_rng(11)


def _loop(**kw: object) -> object:
    from walle_core.ir.primitives import Loop, Region

    region = kw.pop("region")
    return Loop(region=Region(*region), **kw)  # type: ignore[arg-type]


def test_embedding_gather_with_offsets() -> None:
    table = RNG.standard_normal((50, 8)).astype(np.float32)
    ids = RNG.integers(0, 50, 13).astype(np.int64)
    prim = _loop(count=13, region=(1, 0, (0, 0, 1), 0, (0, 0, 1), (1, 1, 8)),
                 has_src_offsets=True, dst_step=8)
    got, want, fast = run_both(prim, [None, table, ids * 8], [(13, 8)], [np.float32])
    assert fast
    assert_close(got[0], want[0])
    np.testing.assert_array_equal(got[0], table[ids])


def test_scatter_into_base_later_iterations_win() -> None:
    base = RNG.standard_normal((6, 4)).astype(np.float32)
    upd = RNG.standard_normal((3, 4)).astype(np.float32)
    rows = np.array([4, 1, 4], np.int64) * 4  # row 4 twice: the last write wins
    prim = _loop(count=3, region=(1, 0, (0, 0, 1), 0, (0, 0, 1), (1, 1, 4)),
                 has_base=True, has_dst_offsets=True, src_step=4)
    got, want, fast = run_both(prim, [base, upd, None, rows], [(6, 4)], [np.float32])
    assert fast
    assert_close(got[0], want[0])
    np.testing.assert_array_equal(got[0][4], upd[2])


def test_strided_region_and_fill() -> None:
    src = RNG.integers(-5, 5, (4, 5, 6)).astype(np.int32)
    # copy columns 1..3 of every row of plane i into a [4, 5, 3] output, fill elsewhere unused
    prim = _loop(count=4, region=(1, 1, (0, 6, 1), 0, (0, 3, 1), (1, 5, 3)),
                 src_step=30, dst_step=15, fill=-9)
    got, want, fast = run_both(prim, [None, src], [(4, 5, 3)], [np.int32])
    assert fast
    np.testing.assert_array_equal(got[0], want[0])


def test_out_of_range_index_is_an_execution_error() -> None:
    from walle_core.ir.errors import ExecutionError

    table = np.zeros((5, 2), np.float32)
    prim = _loop(count=2, region=(1, 0, (0, 0, 1), 0, (0, 0, 1), (1, 1, 2)),
                 has_src_offsets=True, dst_step=2)
    with pytest.raises(ExecutionError, match="index out of range"):
        run_both(prim, [None, table, np.array([0, 10], np.int64)], [(2, 2)], [np.float32])


def test_fill_only_where_the_copies_do_not_reach() -> None:
    """A gather that writes every output element skips the fill; one that leaves gaps still
    fills them (run_both starts every output at 7)."""
    from walle_backend_numba.gather import _covers

    src = RNG.standard_normal((6, 4)).astype(np.float32)
    whole = _loop(count=6, region=(1, 0, (0, 0, 1), 0, (0, 0, 1), (1, 1, 4)), src_step=4,
                  dst_step=4)
    gaps = _loop(count=3, region=(1, 0, (0, 0, 1), 0, (0, 0, 1), (1, 1, 4)), src_step=8,
                 dst_step=8, fill=-1)
    assert _covers(whole, 24) and not _covers(gaps, 24)
    for prim in (whole, gaps):
        got, want, fast = run_both(prim, [None, src], [(6, 4)], [np.float32])
        assert fast
        np.testing.assert_array_equal(got[0], want[0])
    assert (got[0][1::2] == -1).all()


def test_reversed_region_bounds_checked_by_its_extremes() -> None:
    """A region read backwards (negative stride) is in range when its lowest and highest
    offsets are; one element past either end is an error."""
    from walle_core.ir.errors import ExecutionError

    src = RNG.standard_normal(12).astype(np.float32)
    prim = _loop(count=2, region=(1, 5, (0, 0, -1), 0, (0, 0, 1), (1, 1, 6)),
                 has_src_offsets=True, dst_step=6)
    got, want, fast = run_both(prim, [None, src, np.array([0, 6], np.int64)], [(2, 6)],
                               [np.float32])
    assert fast
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[0][1], src[11:5:-1])
    from walle_backend_numba import NumbaBackend
    from walle_backend_numba.checking import spec

    from walle_core.ir.primitives import Step

    backend = NumbaBackend(threads=1)  # the numba kernel itself must refuse (not numpy)
    offs = np.zeros(2, np.int64)
    fn = backend.compile(Step(prim, [0, 1, 2], [3]), [None, spec(src), spec(offs)],
                         [spec(np.zeros((2, 6), np.float32))])
    for bad in ([0, 7], [-1, 0]):
        with pytest.raises(ExecutionError, match="index out of range"):
            fn([None, src, np.array(bad, np.int64)], [np.zeros((2, 6), np.float32)])
