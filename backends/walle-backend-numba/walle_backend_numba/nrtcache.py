"""What numba does at its first dispatch in every process, cut to what cached kernels need.

1. Its runtime library (NRT) comes from an on-disk cache instead of being compiled.
2. Loading a cached kernel no longer imports all of numba's typing and lowering registries.

**The runtime library.**

Whatever the kernels, numba's first dispatch in a process initialises its runtime, and that
compiles a small LLVM module (atomic inc/dec, the MemInfo helpers) from IR: LLVM's optimiser and
its x86 code generator run for it, and the pages of libLLVM they touch stay resident. Measured
here (numba 0.68): ~28 MB of the process's RSS and 25-60 ms, every process, even when every
kernel it runs comes from numba's cache (loading cached machine code needs no code generator).
That was most of the ~45 MB that Walle's engine adds to a process before any model is loaded.

So the first process compiles the module as numba does, with object caching on, and stores its
machine code and linking bitcode (numba's own ``serialize_using_object_code`` form, the one its
function cache uses) in the kernel cache directory; later processes load that instead. The key
covers numba's and llvmlite's versions, the CPU and its features, and the numba settings the
module depends on, so another machine or version compiles afresh. Any failure (an unreadable
or stale file, a numba whose internals differ) falls back to numba's own path: the cache can
only save work, never change what runs. ``WALLE_NUMBA_NRT_CACHE=0`` turns it off.

**The registries.** Before loading a cached function numba refreshes its target context, which
imports every implementation module (numba.cpython.*, numba.np.*, typed containers, random,
polynomials: 76 modules) and fills the typing and lowering registries. Those are what a
*compilation* needs; loading machine code from the cache and calling it does not (the
function's types come pickled with it, and arguments are typed by ``typeof``). Every
compilation refreshes both contexts itself (``CompilerBase.__init__``), and so does the first
failed lowering lookup, so a later cache miss finds them loaded. With a cache that covers
every kernel the refresh is skipped and only the runtime is initialised: peak above the
imported library, same outputs, SqueezeNet 53 -> 44 MB, BERT 83 -> 74, DIN 36 -> 23,
MobileNetV2 60 -> 39. Installed only where numba's ``Cache.load_overload`` is the
refresh-then-load this replaces (checked against its source);
``WALLE_NUMBA_LAZY_REGISTRIES=0`` turns it off.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

_installed = False
_lazy: bool | None = None  # lazy_registries' decision, once per process


def _key() -> str:
    import llvmlite
    import llvmlite.binding as ll
    import numba
    from numba.core import config

    parts = [numba.__version__, llvmlite.__version__, ll.get_process_triple(),
             ll.get_host_cpu_name(), ll.get_host_cpu_features().flatten(), str(config.OPT),
             str(config.MACHINE_BITS), str(config.DEBUG_NRT),
             str(getattr(config, "DEBUG_NRT_STACK_LIMIT", ""))]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


def path() -> Path:
    from walle_backend_numba.codecache import cache_dir

    return cache_dir() / f"nrt-{_key()}.pkl"


def install() -> bool:
    """Route numba's NRT compilation through the cache and load cached kernels without the
    registries (once per process); False when the NRT cache is off or this numba has no such
    hook."""
    global _installed
    lazy_registries()
    if _installed:
        return True
    if os.environ.get("WALLE_NUMBA_NRT_CACHE", "1").lower() in ("0", "false", "no"):
        return False
    try:
        from numba.core.runtime import nrtdynmod
    except ImportError:  # pragma: no cover - a numba without this module
        return False
    original = getattr(nrtdynmod, "compile_nrt_functions", None)
    create = getattr(nrtdynmod, "create_nrt_module", None)
    if original is None or create is None:  # pragma: no cover - other numba internals
        return False

    def compile_nrt_functions(ctx: Any) -> Any:
        try:
            return _load_or_build(ctx, create)
        except Exception:  # the cache only saves work: numba's own path on any failure
            return original(ctx)

    nrtdynmod.compile_nrt_functions = compile_nrt_functions
    _installed = True
    return True


def _load_or_build(ctx: Any, create: Any) -> Any:
    codegen = ctx.codegen()
    where = path()
    try:
        state = pickle.loads(where.read_bytes())
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError):
        state = None
    if state is not None:
        return codegen.unserialize_library(state)
    ir_mod, library = create(ctx)
    library.enable_object_caching()
    library.add_ir_module(ir_mod)
    library.finalize()
    # MCJIT emits the machine code when an address is first asked for
    defined = [fn.name for fn in ir_mod.functions if not fn.is_declaration]
    library.get_pointer_to_function(defined[0])
    data = pickle.dumps(library.serialize_using_object_code(), protocol=pickle.HIGHEST_PROTOCOL)
    fd, tmp = tempfile.mkstemp(dir=where.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, where)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
    return library


def lazy_registries() -> bool:
    """Load cached kernels without refreshing numba's registries (see the module docstring);
    False when off or when this numba's cache loader is not the one this replaces."""
    global _lazy
    if _lazy is None:
        _lazy = _install_lazy_loader()
    return _lazy


def _install_lazy_loader() -> bool:
    if os.environ.get("WALLE_NUMBA_LAZY_REGISTRIES", "1").lower() in ("0", "false", "no"):
        return False
    import inspect
    import sys

    try:
        from numba.core import caching
        from numba.core.runtime import nrt  # noqa: F401  (the module, not the package's name)
    except ImportError:  # pragma: no cover - other numba internals
        return False
    runtime = sys.modules["numba.core.runtime.nrt"].rtsys
    original = caching.Cache.load_overload
    try:
        source = inspect.getsource(original)
    except (OSError, TypeError):  # pragma: no cover - no source to check against
        return False
    expected = ("target_context.refresh()", "self._guard_against_spurious_io_errors()",
                "return self._load_overload(sig, target_context)")
    if not all(part in source for part in expected) or source.count("\n") > 14:
        return False  # a loader that does more than refresh-then-load: keep numba's

    def load_overload(self: Any, sig: Any, target_context: Any) -> Any:
        runtime.initialize(target_context)  # what the refresh did that cached code needs
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)

    caching.Cache.load_overload = load_overload
    return True
