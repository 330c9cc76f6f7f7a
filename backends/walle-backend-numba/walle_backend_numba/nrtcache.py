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
import struct
from pathlib import Path
from typing import Any

from walle_backend_numba.codecache import cache_dir, write_atomic

_installed = False
_lazy: bool | None = None  # lazy_registries' decision, once per process
_lazy_bitcode: bool | None = None  # lazy_bitcode's decision, once per process
served_initial = 0  #: times the initial module's machine code came from the cache


def _off(switch: str) -> bool:
    """Whether the environment turns ``switch`` off (``0``, ``false`` or ``no``)."""
    return os.environ.get(switch, "1").lower() in ("0", "false", "no")


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
    return cache_dir() / f"nrt-{_key()}.pkl"


def install() -> bool:
    """Route numba's NRT compilation through the cache and load cached kernels without the
    registries (once per process); False when the NRT cache is off or this numba has no such
    hook."""
    global _installed
    lazy_registries()
    lazy_bitcode()
    if _installed:
        return True
    if _off("WALLE_NUMBA_NRT_CACHE"):
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
    _serve_initial_module(codegen)
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
    try:
        write_atomic(where, data)
    except OSError:  # a read-only cache only costs compiling again next time
        pass
    return library


def initial_path() -> Path:
    return cache_dir() / f"initial-{_key()}.o"


def _serve_initial_module(codegen: Any) -> None:
    """Give MCJIT the machine code of the codegen's initial module from the cache.

    numba creates its execution engine around an empty module; the first ``finalize_object``
    (loading the cached NRT) has MCJIT compile that module, and numba's object-cache hook has
    no code for it (it belongs to no library), so LLVM's x86 code generator runs for an empty
    module and the ~6 MB of libLLVM it touches stay resident. The first process keeps the
    object MCJIT emits for it; later ones hand that back. Any failure leaves numba's hooks.
    """
    ee = getattr(getattr(codegen, "_engine", None), "_ee", None)
    initial = getattr(codegen, "_llvm_module", None)
    notify = getattr(ee, "_object_cache_notify", None)
    getbuffer = getattr(ee, "_object_cache_getbuffer", None)
    if ee is None or initial is None or notify is None or getbuffer is None or \
            getattr(ee, "_walle_initial", False):
        return
    where = initial_path()

    def is_initial(module: Any) -> bool:
        return module is initial or (module.name == initial.name and
                                     not any(True for _ in module.functions))

    def on_compiled(module: Any, buf: bytes) -> None:
        if is_initial(module):
            try:
                write_atomic(where, buf)
            except OSError:
                pass
            return
        notify(module, buf)

    def get_buffer(module: Any) -> Any:
        global served_initial
        if is_initial(module):
            try:
                buf = where.read_bytes()
            except OSError:
                return None
            if defined_symbols(buf) is None:  # not an object this loader wrote: compile
                return None
            served_initial += 1
            return buf
        return getbuffer(module)

    ee.set_object_cache(on_compiled, get_buffer)
    ee._walle_initial = True


def lazy_registries() -> bool:
    """Load cached kernels without refreshing numba's registries (see the module docstring);
    False when off or when this numba's cache loader is not the one this replaces."""
    global _lazy
    if _lazy is None:
        _lazy = _install_lazy_loader()
    return _lazy


def _install_lazy_loader() -> bool:
    if _off("WALLE_NUMBA_LAZY_REGISTRIES"):
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
    _install_lazy_envs()
    return True


def _install_lazy_envs() -> bool:
    """A cached kernel's pickled environments name the module each inlined function came
    from, and numba imports it to use its ``__dict__`` as the environment's globals. For the
    implementations numba inlines (``np.empty`` is ``numba.np.arrayobj``'s, ``np.full``
    ``numba.np.npyimpl``'s) that import pulls in the implementation modules the lazy loader
    skipped (3 MB, on every model). Their nopython code never reads those globals (only
    object mode does), so an environment of a ``numba.`` module not imported yet gets a stub
    of them instead; walle's own modules and anything already imported keep numba's path."""
    import builtins
    import inspect
    import sys

    try:
        from numba.core import environment
    except ImportError:  # pragma: no cover - other numba internals
        return False
    original = getattr(environment, "_rebuild_env", None)
    if original is None:  # pragma: no cover - other numba internals
        return False
    try:
        source = inspect.getsource(original)
    except (OSError, TypeError):  # pragma: no cover
        return False
    if "importlib.import_module(modname)" not in source or \
            "Environment(mod.__dict__)" not in source:
        return False

    def _rebuild_env(modname: Any, consts: Any, env_name: Any) -> Any:
        if not (isinstance(modname, str) and modname.startswith("numba.")) or \
                modname in sys.modules:
            return original(modname, consts, env_name)
        env = environment.lookup_environment(env_name)
        if env is not None:
            return env
        env = environment.Environment({"__name__": modname, "__builtins__": builtins})
        env.consts[:] = consts
        env.env_name = env_name
        environment.Environment._memo[env_name] = env
        return env

    environment._rebuild_env = _rebuild_env
    return True


# ---- cached kernels' linking bitcode, parsed only when something links against it ----------

def defined_symbols(obj: bytes) -> set[str] | None:
    """Names of the symbols an x86-64 ELF relocatable object defines (functions, data, common
    and untyped symbols), from its symbol table; None when ``obj`` is not a
    little-endian ELF64 object with one."""
    if len(obj) < 64 or obj[:4] != b"\x7fELF" or obj[4] != 2 or obj[5] != 1:
        return None
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", obj, 0x3A)
    if shentsize < 64 or shoff + shnum * shentsize > len(obj):
        return None
    sections = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + i * shentsize)
                for i in range(shnum)]
    names: set[str] = set()
    found = False
    for _, sh_type, _, _, offset, size, link, _, _, entsize in sections:
        if sh_type != 2 or entsize < 24 or link >= shnum:  # SHT_SYMTAB
            continue
        found = True
        str_off, str_size = sections[link][4], sections[link][5]
        if offset + size > len(obj) or str_off + str_size > len(obj):
            return None
        for at in range(offset, offset + size - entsize + 1, entsize):
            st_name, st_info, _, st_shndx = struct.unpack_from("<IBBH", obj, at)
            if st_shndx == 0 or (st_info & 0xF) not in (0, 1, 2):
                continue  # undefined, or a section / file symbol (common ones are defined)
            end = obj.find(b"\0", str_off + st_name, str_off + str_size)
            if st_name and end > 0:
                names.add(obj[str_off + st_name:end].decode("utf-8", "replace"))
    return names if found else None


def lazy_bitcode() -> bool:
    """Load cached kernels without parsing their linking bitcode (see below); False when off
    or when this numba's loader is not the one this replaces."""
    global _lazy_bitcode
    if _lazy_bitcode is None:
        _lazy_bitcode = _install_lazy_bitcode()
    return _lazy_bitcode


def _install_lazy_bitcode() -> bool:
    """numba caches a kernel as its machine code plus the LLVM bitcode other libraries link
    against, and loading it parses that bitcode into an in-memory module (LLVM's bitcode
    reader: ~3.5 MB of libLLVM pages at the first load; the parsed IR, 0.1-2 MB per kernel,
    for the process's life). Running the kernel needs only the machine code and the names of
    the symbols it defines, which the object's own symbol table gives. So the bitcode is kept
    as bytes and parsed when something asks for the module to link against (a new compilation
    calling the cached function). ``WALLE_NUMBA_LAZY_BITCODE=0`` turns it off."""
    if _off("WALLE_NUMBA_LAZY_BITCODE"):
        return False
    import inspect

    try:
        import llvmlite.binding as ll
        from numba.core import codegen
    except ImportError:  # pragma: no cover - other numba internals
        return False
    base = getattr(codegen, "JITCodeLibrary", None)
    if base is None or not hasattr(base, "_get_module_for_linking"):  # pragma: no cover
        return False
    original = base._unserialize
    try:
        source = inspect.getsource(original.__func__)
        linking = inspect.getsource(base._get_module_for_linking)
    except (OSError, TypeError, AttributeError):  # pragma: no cover - no source to check
        return False
    expected = ("self._set_compiled_object(object_code)",
                "self._shared_module = ll.parse_bitcode(shared_bitcode)",
                "self._finalize_final_module()",
                "self._codegen._engine._load_defined_symbols(self._shared_module)")
    if not all(part in source for part in expected) or \
            "if self._shared_module is not None:" not in linking:
        return False  # a loader that does something else: keep numba's

    class LazyBitcodeLibrary(base):  # type: ignore[misc, valid-type]
        """A cached kernel's library whose linking module is parsed on first use."""

        _pending_bitcode: bytes | None = None

        def _get_module_for_linking(self) -> Any:
            if self._pending_bitcode is not None:
                self._shared_module = ll.parse_bitcode(self._pending_bitcode)
                self._pending_bitcode = None
            return super()._get_module_for_linking()

        def get_pointer_to_function(self, name: str) -> Any:
            # a name the symbol table did not give (never seen): numba's way, from the bitcode,
            # rather than a null address
            address = super().get_pointer_to_function(name)
            if not address and self._pending_bitcode is not None:
                self._codegen._engine._load_defined_symbols(self._get_module_for_linking())
                address = super().get_pointer_to_function(name)
            return address

    def _unserialize(cls: Any, cg: Any, state: Any) -> Any:
        name, kind, data = state
        names = defined_symbols(data[0]) if kind == "object" and cls is base else None
        if not names:
            return original.__func__(cls, cg, state)
        object_code, shared_bitcode = data
        self = LazyBitcodeLibrary(cg, name)
        self.enable_object_caching()
        self._set_compiled_object(object_code)
        self._pending_bitcode = shared_bitcode
        self._finalize_final_module()
        cg._engine._defined_symbols |= names
        return self

    base._unserialize = classmethod(_unserialize)
    return True
