"""The reference backend: plain numpy, the living definition of every primitive.

Registered under ``walle.backends`` as ``reference`` exactly like an external backend.
"""

from __future__ import annotations

from typing import ClassVar

from walle_core.backend import Availability, Backend, Device
from walle_core.hostinfo import cpu_model, usable_cores
from walle_core.plugin import PLUGIN_API_VERSION


class ReferenceBackend(Backend):
    """Pure-numpy reference implementation of every primitive (the definition others match)."""

    name: ClassVar[str] = "reference"
    api_version: ClassVar[int] = PLUGIN_API_VERSION
    requires: ClassVar[tuple[str, ...]] = ("numpy",)

    @classmethod
    def probe(cls) -> Availability:
        import numpy as np

        a = np.arange(6, dtype=np.float32).reshape(2, 3)
        got = a @ a.T
        if not np.array_equal(got, np.array([[5, 14], [14, 50]], dtype=np.float32)):
            return Availability.unavailable(f"numpy matmul smoke test gave {got.tolist()}")
        cpu = Device(
            name=cpu_model(),
            kind="cpu",
            platform=f"numpy {np.__version__}",
            details={"cores": usable_cores()},
        )
        return Availability(ok=True, devices=(cpu,))
