"""Test settings: two threads at most (the CI machine has two cores shared with others)."""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
