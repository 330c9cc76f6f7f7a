"""The skeleton backend for Walle.

Keep this module light: import your runtime library (pyopencl, vulkan, cupy...) inside ``probe``
and the execution methods, never here, so that ``walle backends list`` stays fast.
"""

from __future__ import annotations

from typing import ClassVar

from walle_core.backend import Availability, Backend, Device
from walle_core.plugin import PLUGIN_API_VERSION

__all__ = ["SkeletonBackend"]


class SkeletonBackend(Backend):
    """The skeleton backend (describe it in one line: this is what the listing shows)."""

    name: ClassVar[str] = "skeleton"
    api_version: ClassVar[int] = PLUGIN_API_VERSION
    # Import names of the libraries the backend needs; checked without importing them.
    requires: ClassVar[tuple[str, ...]] = ("numpy",)

    @classmethod
    def probe(cls) -> Availability:
        # Replace with a real smoke operation on your runtime: build and run a tiny kernel and
        # check its result. Return Availability.unavailable("why") when the runtime is absent;
        # raise only for a real bug (it is listed as an error).
        import numpy as np

        x = np.arange(8, dtype=np.float32)
        if not np.array_equal(x * 2 + 1, np.arange(1, 17, 2, dtype=np.float32)):
            return Availability.unavailable("smoke test returned a wrong result")
        return Availability(ok=True, devices=(Device(name="host", kind="cpu"),))
