"""Every supported case of the ONNX backend node test suite must pass on the numpy kernels.

Cases whose graph uses an op without a kernel are skipped (they show up as unsupported in
``python -m walle_core.reference_ops.coverage``). Known failures are listed in
``known_failures.txt`` and marked xfail, so a regression in a passing case fails the run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from walle_core.reference_ops.coverage import (
    case_dirs,
    compare,
    load_case,
    missing_ops,
    run_graph,
)

KNOWN_FAILURES = {
    line.split("#")[0].strip()
    for line in (Path(__file__).parent / "known_failures.txt").read_text().splitlines()
    if line.split("#")[0].strip()
}

# Cases that take more than a second or two on the numpy kernels.
SLOW_CASES: set[str] = set()


def _params() -> list[object]:
    params = []
    for d in case_dirs():
        marks = []
        if d.name in KNOWN_FAILURES:
            marks.append(pytest.mark.xfail(reason="known failure", strict=False))
        if d.name in SLOW_CASES:
            marks.append(pytest.mark.slow)
        params.append(pytest.param(d, id=d.name, marks=marks))
    return params


@pytest.mark.parametrize("case_dir", _params())
def test_node_case(case_dir: Path) -> None:
    model, inputs, expected = load_case(case_dir)
    missing = missing_ops(model)
    if missing:
        pytest.skip(f"no kernel for {', '.join(sorted(set(missing)))}")
    with np.errstate(all="ignore"):
        actual = run_graph(model, inputs)
    assert len(actual) == len(expected)
    for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
        compare(e, a, f"output {i}")
