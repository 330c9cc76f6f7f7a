"""numba's runtime library comes from Walle's cache in a second process (``nrtcache.py``).

Each case runs fresh interpreters: the runtime initialises once per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# a kernel that needs numba's runtime (an array allocated inside), run through the backend's
# install path; prints where the runtime came from
SCRIPT = r"""
import numpy as np
from numba.core.runtime import nrtdynmod
built = []
create = nrtdynmod.create_nrt_module
def counting(ctx):
    built.append(1)
    if {forbid!r}:
        raise AssertionError("compiled the runtime although it was cached")
    return create(ctx)
nrtdynmod.create_nrt_module = counting
from walle_backend_numba import nrtcache
assert nrtcache.install()
import numba
@numba.njit(cache=False)
def twice(n):
    a = np.zeros(n, np.float32)
    for i in range(n):
        a[i] = 2.0 * i
    return a
assert np.array_equal(twice(5), np.arange(5, dtype=np.float32) * 2)
print("built" if built else "cached", nrtcache.path())
"""


def _run(tmp_path: Path, forbid: bool = False, **env: str) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ, WALLE_NUMBA_CACHE=str(tmp_path), **env)
    return subprocess.run([sys.executable, "-c", SCRIPT.format(forbid=forbid)], env=environ,
                          capture_output=True, text=True, timeout=300)


def test_second_process_loads_the_runtime_instead_of_compiling_it(tmp_path: Path) -> None:
    first = _run(tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("built ")
    stored = Path(first.stdout.split()[1])
    assert stored.parent == tmp_path and stored.stat().st_size > 0
    # the second process must not build it: create_nrt_module raises there
    second = _run(tmp_path, forbid=True)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("cached ")


def test_a_corrupt_cache_file_falls_back_to_compiling(tmp_path: Path) -> None:
    first = _run(tmp_path)
    assert first.returncode == 0, first.stderr
    stored = Path(first.stdout.split()[1])
    stored.write_bytes(b"not a pickle")
    again = _run(tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("built ")
    assert stored.read_bytes() != b"not a pickle"  # rewritten with the real library


def test_switched_off_by_the_environment(tmp_path: Path) -> None:
    script = ("from walle_backend_numba import nrtcache\n"
              "print(nrtcache.install())\n")
    environ = dict(os.environ, WALLE_NUMBA_CACHE=str(tmp_path), WALLE_NUMBA_NRT_CACHE="0")
    out = subprocess.run([sys.executable, "-c", script], env=environ, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


KERNEL = '''
import numba
import numpy as np


@numba.njit(cache=True, parallel=True)
def doubled(n):
    out = np.zeros(n, np.float32)
    for i in numba.prange(n):
        out[i] = 2.0 * i
    return out
'''

LOAD = r"""
import sys
import numpy as np
from walle_backend_numba import nrtcache
nrtcache.install()
import kern
assert np.array_equal(kern.doubled(6), np.arange(6, dtype=np.float32) * 2)
assert kern.doubled.stats.cache_hits, "not loaded from the cache"
loaded = "numba.np.arraymath" in sys.modules
# a compilation after that still finds every registry (the compiler refreshes them itself)
import numba
@numba.njit
def summed(a):
    return np.cumsum(a)[-1] + a.max()
assert summed(np.ones(4)) == 5.0
print("registries" if loaded else "lean")
"""


def _load(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "nc"),
                   WALLE_NUMBA_CACHE=str(tmp_path), PYTHONPATH=str(tmp_path), **env)
    return subprocess.run([sys.executable, "-c", LOAD], env=environ, capture_output=True,
                          text=True, timeout=300)


def test_cached_kernels_load_without_numbas_registries(tmp_path: Path) -> None:
    (tmp_path / "kern.py").write_text(KERNEL)
    environ = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "nc"), PYTHONPATH=str(tmp_path))
    first = subprocess.run([sys.executable, "-c", "import kern; kern.doubled(3)"], env=environ,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    lean = _load(tmp_path)
    assert lean.returncode == 0, lean.stderr
    assert lean.stdout.strip() == "lean"
    full = _load(tmp_path, WALLE_NUMBA_LAZY_REGISTRIES="0")  # numba's own loader
    assert full.returncode == 0, full.stderr
    assert full.stdout.strip() == "registries"
