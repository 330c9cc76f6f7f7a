"""Finding backends by entry point, and the seam where placement search plugs in.

Backends are drivers in the ``walle.backends`` namespace (the reference backend included), so
the engine never imports one by module name. ``assign`` answers "which backend runs each
primitive": today every step goes to the one chosen backend ("auto" = reference); the
semi-auto search of ``walle_core.search`` replaces it with a per-step choice.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from walle_core.backend import ExecutionBackend
from walle_core.ir.errors import WalleError
from walle_core.ir.primitives import Step

AUTO_DEFAULT = "reference"


class BackendError(WalleError):
    """The requested backend is unknown, failed to load or cannot run here."""


def available_names() -> list[str]:
    return sorted({ep.name for ep in entry_points(group="walle.backends")})


def create_backend(name: str, threads: int | None = None) -> ExecutionBackend:
    """Instantiate the backend registered as ``name`` ("auto" picks the default)."""
    wanted = AUTO_DEFAULT if name == "auto" else name
    matches = [ep for ep in entry_points(group="walle.backends") if ep.name == wanted]
    if not matches:
        raise BackendError(
            f"no backend named {wanted!r}; installed: {', '.join(available_names()) or 'none'}"
        )
    try:
        cls = matches[0].load()
    except Exception as exc:
        raise BackendError(f"backend {wanted!r} failed to load: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, ExecutionBackend)):
        raise BackendError(f"backend {wanted!r} does not implement the execution contract")
    quick = cls.quick_check()
    if quick is not None and not quick.ok:
        raise BackendError(f"backend {wanted!r} is unavailable: {quick.reason}")
    return cls(threads=threads)


def assign(steps: list[Step], backends: list[ExecutionBackend]) -> list[ExecutionBackend]:
    """The backend for each step: the first one that supports it (search refines this)."""
    chosen = []
    for step in steps:
        for backend in backends:
            if backend.supports(step.prim):
                chosen.append(backend)
                break
        else:
            raise BackendError(f"no backend supports {step.prim.kind} from {step.origin!r}")
    return chosen
