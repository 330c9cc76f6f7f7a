"""Test settings: two threads at most (the CI machine has two cores shared with others)."""

from __future__ import annotations

import os

# calibration in this process, where tests can watch and replace it (sessions otherwise
# calibrate in a child process: search/profile.py, _calibrate_in_child)
os.environ.setdefault("WALLE_CALIBRATE_IN_PROCESS", "1")

os.environ.setdefault("NUMBA_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
