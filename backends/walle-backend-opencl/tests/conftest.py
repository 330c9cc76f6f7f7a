"""Test settings: two CPU threads for PoCL and BLAS (the machine's two cores are shared).

``opencl`` is the backend under test, skipped with the reason when no OpenCL runtime is usable
unless ``WALLE_REQUIRE_OPENCL=1``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# calibration in this process, where tests can watch and replace it (sessions otherwise
# calibrate in a child process: search/profile.py, _calibrate_in_child)
os.environ.setdefault("WALLE_CALIBRATE_IN_PROCESS", "1")

sys.path.insert(0, str(Path(__file__).parent))  # the shared harness module

os.environ.setdefault("POCL_MAX_PTHREAD_COUNT", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def opencl():  # type: ignore[no-untyped-def]
    from walle_backend_opencl import OpenCLBackend

    found = OpenCLBackend.probe()
    if not found.ok:
        if os.environ.get("WALLE_REQUIRE_OPENCL") == "1":
            pytest.fail(f"WALLE_REQUIRE_OPENCL=1 but OpenCL is unusable: {found.reason}")
        pytest.skip(f"no usable OpenCL runtime here: {found.reason}")
    return OpenCLBackend(threads=2)
