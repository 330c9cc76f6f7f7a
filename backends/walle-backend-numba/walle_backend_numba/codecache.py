"""Generated kernels live as module files in a cache directory, so numba's ``cache=True`` works.

numba caches a compiled function next to the file that defines it, keyed by that file; code
built with ``exec`` has no file and recompiles in every process. Writing each generated source
to ``<cache>/walle_gen_<hash>.py`` (hash of the source) and importing it gives generated kernels
the same on-disk cache as static ones: a second process loads machine code instead of running
LLVM.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

_loaded: dict[str, ModuleType] = {}


def cache_dir() -> Path:
    """``$WALLE_NUMBA_CACHE``, else ``$XDG_CACHE_HOME/walle/numba`` (``~/.cache`` default)."""
    env = os.environ.get("WALLE_NUMBA_CACHE")
    if env:
        path = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
        path = Path(base) / "walle" / "numba"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_atomic(path: Path, data: bytes) -> None:
    """``path`` holds ``data`` whole or not at all (written beside it, then renamed), so a
    process reading the cache concurrently never sees a partial file; raises OSError."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_source(source: str) -> ModuleType:
    """Import ``source`` as a module stored under the cache dir (written once, atomically)."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    name = f"walle_gen_{digest}"
    if name in _loaded:
        return _loaded[name]
    directory = cache_dir()
    path = directory / f"{name}.py"
    if not path.exists() or path.read_text() != source:
        write_atomic(path, source.encode())
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _loaded[name] = module
    return module
