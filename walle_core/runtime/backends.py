"""Finding backends by entry point, and which ones a session searches over.

Backends are drivers in the ``walle.backends`` namespace (the reference backend included), so
the engine never imports one by module name. A session's ``backend=`` names the candidates the
semi-auto search (:mod:`walle_core.search`) chooses from per step:

* ``"auto"``: every installed execution backend that loads and is available here;
* ``"numba"``: that backend, with the reference backend behind it only for steps it cannot run;
* ``"opencl,numba"``: the search chooses between these (reference again only as fallback).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from walle_core.backend import ExecutionBackend
from walle_core.ir.errors import WalleError
from walle_core.ir.primitives import TensorSpec

AUTO_DEFAULT = "reference"


class BackendError(WalleError):
    """The requested backend is unknown, failed to load or cannot run here."""


def available_names() -> list[str]:
    return sorted({ep.name for ep in entry_points(group="walle.backends")})


def _backend_class(wanted: str) -> type[ExecutionBackend]:
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
    return cls


def create_backend(name: str, threads: int | None = None) -> ExecutionBackend:
    """Instantiate the backend registered as ``name`` ("auto": the reference backend)."""
    wanted = AUTO_DEFAULT if name == "auto" else name
    cls = _backend_class(wanted)
    quick = cls.quick_check()
    if quick is not None and not quick.ok:
        raise BackendError(f"backend {wanted!r} is unavailable: {quick.reason}")
    return cls(threads=threads)


def resolve(spec: str, threads: int | None = None
            ) -> tuple[list[ExecutionBackend], list[ExecutionBackend], list[str]]:
    """``(candidates, fallback, notes)`` for a session's ``backend=`` string."""
    notes: list[str] = []
    if spec == "auto":
        names = [n for n in available_names() if n != "reference"] + ["reference"]
        names = [n for n in names if n not in _disabled()]
        candidates = []
        for name in names:
            try:
                cls = _backend_class(name)
                if not cls.auto_candidate():
                    notes.append(f"{name} not searched by auto (it says so; name it to use it)")
                    continue
                candidates.append(create_backend(name, threads))
            except BackendError as exc:
                notes.append(f"{name} skipped: {exc}")
        return candidates, [], notes
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise BackendError("no backend named in an empty backend list")
    candidates = [create_backend(n, threads) for n in names]
    fallback = [] if "reference" in names else [create_backend("reference", threads)]
    return candidates, fallback, notes


def _disabled() -> set[str]:
    import os

    return {n.strip() for n in os.environ.get("WALLE_AUTO_EXCLUDE", "").split(",") if n.strip()}


class PlanningView(ExecutionBackend):
    """What the planner sees of a set of backends: a composite op is a native kernel when any
    of them runs it; the first backend decides where it prefers native over decomposition."""

    def __init__(self, backends: list[ExecutionBackend]) -> None:
        super().__init__(backends[0].threads)
        self.backends = backends
        self.name = backends[0].name  # type: ignore[misc]
        self._native = set().union(*(b.native_ops() for b in backends))

    def native_ops(self) -> set[tuple[str, str]]:
        return self._native

    def prefers_native(self, domain: str, op_type: str) -> bool:
        first = self.backends[0]
        return (domain, op_type) in first.native_ops() and first.prefers_native(domain, op_type)

    def fused_activations(self) -> set[tuple[str, str]]:
        """Ops whose fused activation every backend running them natively applies."""
        return self._fusable(lambda b: b.fused_activations())

    def fused_adds(self) -> set[tuple[str, str]]:
        """Ops whose fused residual add every backend running them natively applies."""
        return self._fusable(lambda b: b.fused_adds())

    def channels_last_ops(self) -> set[tuple[str, str]]:
        """Ops every backend running them natively also runs channels-last."""
        return self._fusable(lambda b: b.channels_last_ops())

    def _fusable(self, declared: Callable[[ExecutionBackend], set[tuple[str, str]]]
                 ) -> set[tuple[str, str]]:
        ok = set()
        for key in self._native:
            runners = [b for b in self.backends if key in b.native_ops()]
            if runners and all(key in declared(b) for b in runners):
                ok.add(key)
        return ok

    def prefers_native_for(self, domain: str, op_type: str,
                           inputs: Sequence[TensorSpec | None]) -> bool:
        first = self.backends[0]
        return (domain, op_type) in first.native_ops() and \
            first.prefers_native_for(domain, op_type, inputs)
