"""numba's runtime library comes from Walle's cache in a second process (``nrtcache.py``).

Each case runs fresh interpreters: the runtime initialises once per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from walle_backend_numba import nrtcache

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
# np.zeros inlined from numba.np.arrayobj: its environment does not import that module
impl = "arrayobj" if "numba.np.arrayobj" in sys.modules else "no-arrayobj"
# a compilation after that still finds every registry (the compiler refreshes them itself)
import numba
@numba.njit
def summed(a):
    return np.cumsum(a)[-1] + a.max()
assert summed(np.ones(4)) == 5.0
# a new compilation calling the cached kernel links against its bitcode, parsed only now
lib = kern.doubled.overloads[kern.doubled.signatures[0]].library
pending = getattr(lib, "_pending_bitcode", None) is not None
@numba.njit
def calls(n):
    return kern.doubled(n).sum()
assert calls(4) == 12.0
assert getattr(lib, "_pending_bitcode", None) is None
print("registries" if loaded else "lean", "lazy-bitcode" if pending else "parsed",
      nrtcache.served_initial, impl)
"""


def _compile_kernel(tmp_path: Path) -> None:
    """``kern.py`` in ``tmp_path``, compiled once by a process of its own into its cache."""
    (tmp_path / "kern.py").write_text(KERNEL)
    environ = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "nc"), PYTHONPATH=str(tmp_path))
    first = subprocess.run([sys.executable, "-c", "import kern; kern.doubled(3)"], env=environ,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr


def _load(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "nc"),
                   WALLE_NUMBA_CACHE=str(tmp_path), PYTHONPATH=str(tmp_path), **env)
    return subprocess.run([sys.executable, "-c", LOAD], env=environ, capture_output=True,
                          text=True, timeout=300)


def test_cached_kernels_load_without_numbas_registries(tmp_path: Path) -> None:
    _compile_kernel(tmp_path)
    lean = _load(tmp_path)
    assert lean.returncode == 0, lean.stderr
    assert lean.stdout.split()[:2] == ["lean", "lazy-bitcode"]
    assert lean.stdout.split()[3] == "no-arrayobj"
    full = _load(tmp_path, WALLE_NUMBA_LAZY_REGISTRIES="0",  # numba's own loader
                 WALLE_NUMBA_LAZY_BITCODE="0")
    assert full.returncode == 0, full.stderr
    assert full.stdout.split()[:2] == ["registries", "parsed"]
    assert full.stdout.split()[3] == "arrayobj"


def test_the_engines_initial_module_comes_from_the_cache(tmp_path: Path) -> None:
    _compile_kernel(tmp_path)
    # the first loading process compiles the empty initial module and keeps its object
    built = _load(tmp_path)
    assert built.returncode == 0, built.stderr
    assert built.stdout.split()[2] == "0"
    stored = list(tmp_path.glob("initial-*.o"))
    assert len(stored) == 1 and nrtcache.defined_symbols(stored[0].read_bytes()) is not None
    served = _load(tmp_path)
    assert served.returncode == 0, served.stderr
    assert served.stdout.split()[2] == "1"
    # a file that is not an object this loader wrote is ignored: compiled again
    stored[0].write_bytes(b"garbage")
    again = _load(tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split()[2] == "0"


def test_defined_symbols_reads_an_objects_symbol_table() -> None:
    import llvmlite.binding as ll

    ll.initialize_native_target()
    ll.initialize_native_asmprinter()
    ir = """
    @counter = global i64 0
    @shared = common global i64 0
    @hidden = internal global i64 0
    declare i64 @elsewhere(i64)
    define i64 @visible(i64 %x) {
      %v = load i64, ptr @hidden
      %y = call i64 @elsewhere(i64 %x)
      %z = add i64 %y, %v
      ret i64 %z
    }
    """
    module = ll.parse_assembly(ir)
    machine = ll.Target.from_triple(ll.get_process_triple()).create_target_machine()
    names = nrtcache.defined_symbols(machine.emit_object(module))
    assert names is not None
    assert {"counter", "shared", "visible"} <= names
    assert "elsewhere" not in names  # only declared here
    assert nrtcache.defined_symbols(b"not an object") is None
    assert nrtcache.defined_symbols(b"\x7fELF" + bytes(60)) is None  # no symbol table


def test_a_symbol_the_object_does_not_list_comes_from_the_bitcode(tmp_path: Path) -> None:
    """Were an object's symbol table ever to miss a function's name, the address comes from
    numba's bitcode path, not a null pointer."""
    _compile_kernel(tmp_path)
    environ = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "nc"), PYTHONPATH=str(tmp_path),
                   WALLE_NUMBA_CACHE=str(tmp_path))
    script = (
        "import numpy as np\n"
        "from walle_backend_numba import nrtcache\n"
        "nrtcache.install()\n"
        "nrtcache.defined_symbols = lambda obj: {'not_a_symbol_of_it'}\n"
        "import kern\n"
        "assert np.array_equal(kern.doubled(6), np.arange(6, dtype=np.float32) * 2)\n"
        "assert kern.doubled.stats.cache_hits\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", script], env=environ, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
