"""The backend contract every compute backend implements, built-in or plugin.

A backend is a class registered under the ``walle.backends`` entry-point namespace. Importing the
module that defines it must stay cheap: heavy libraries (numba, pyopencl, vulkan, ...) are
imported inside :meth:`Backend.probe` and the execution methods, never at module level, so that
``walle backends list`` answers without loading them.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Device:
    """One device a backend can run on (a CPU, an OpenCL device, a GPU...)."""

    name: str
    kind: str  # "cpu", "gpu", "accelerator", "simulator", ...
    platform: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Availability:
    """The answer of a probe: can this backend run here, and on what."""

    ok: bool
    reason: str = ""
    devices: tuple[Device, ...] = ()

    @classmethod
    def unavailable(cls, reason: str) -> Availability:
        return cls(ok=False, reason=reason)


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    """Names in ``modules`` that cannot be imported, found without importing them."""
    missing = []
    for module in modules:
        try:
            if importlib.util.find_spec(module) is None:
                missing.append(module)
        except (ImportError, ValueError):
            missing.append(module)
    return missing


class Backend:
    """Base class of compute backends.

    Subclasses set ``name`` (the entry-point id), ``api_version`` (the ``PLUGIN_API_VERSION`` they
    were written against) and ``requires`` (import names of the heavy libraries they need), and
    override :meth:`probe` with a real smoke operation.
    """

    name: ClassVar[str] = ""
    api_version: ClassVar[int] = 0
    requires: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def quick_check(cls) -> Availability | None:
        """A check that imports nothing: ``None`` when nothing is known to be missing."""
        missing = missing_modules(cls.requires)
        if missing:
            return Availability.unavailable(f"{', '.join(missing)} is not installed")
        return None

    @classmethod
    def probe(cls) -> Availability:
        """Run a real smoke operation and list the devices. Must not raise for a missing runtime:
        return ``Availability.unavailable(reason)``; raising is reported as an error."""
        raise NotImplementedError
