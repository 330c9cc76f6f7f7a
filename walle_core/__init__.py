"""Walle's minimal core: engine, stream runtime, deploy protocol and the plugin host.

Heavy modules are imported lazily so that ``walle --help`` and listing commands stay fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Session", "__version__"]


def __getattr__(name: str) -> Any:
    # Session pulls in numpy and the engine; only pay for it when asked.
    if name == "Session":
        from walle_core.runtime.session import Session

        return Session
    raise AttributeError(f"module 'walle_core' has no attribute {name!r}")
