"""Facts about the host machine that backends report in their probes (CPU model, cores), and
where Walle keeps its per-machine caches."""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path


def cache_root() -> Path:
    """``$WALLE_CACHE_DIR``, else ``~/.cache/walle``: the root of every per-machine cache
    (calibration profiles, validated models, benchmark models)."""
    root = os.environ.get("WALLE_CACHE_DIR") or os.path.join("~", ".cache", "walle")
    return Path(root).expanduser()


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's marketing name where the OS tells it, else the machine architecture."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
