"""Driver discovery: which implementations of backends, sources and policies are installed.

Drivers are found through entry points (stevedore loads them); the entry-point name is the short,
user-visible id. Listing reads metadata only. Loading is fail-soft per plugin: one that fails to
import, declares an unsupported API version, or is disabled by ``WALLE_DISABLED_PLUGINS`` is
reported with its reason and skipped; it never breaks the caller.

In-process drivers (tests, embedding applications) are added with :func:`register_driver`; they
go through the same checks as installed ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from walle_core.plugin import MIN_PLUGIN_API_VERSION, PLUGIN_API_VERSION

NAMESPACES: dict[str, str] = {
    "backends": "walle.backends",
    "sources": "walle.sources",
    "policies": "walle.policies",
}
HOOKS_NAMESPACE = "walle.hooks"
DISABLED_ENV = "WALLE_DISABLED_PLUGINS"

# namespace -> name -> (object, distribution label)
_IN_PROCESS: dict[str, dict[str, tuple[Any, str]]] = {}


@dataclass
class DriverInfo:
    """What is known of one driver: its metadata, and once loaded, its object or its error."""

    name: str
    namespace: str
    target: str  # "module:attr" for installed drivers, "<in-process>" otherwise
    distribution: str
    version: str
    obj: Any = None
    api_version: int | None = None
    status: str = "unloaded"  # unloaded | loaded | error | disabled
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def description(self) -> str:
        doc = getattr(self.obj, "__doc__", None) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""


def disabled_names() -> set[str]:
    """Entry-point names or distribution names listed in ``WALLE_DISABLED_PLUGINS``."""
    raw = os.environ.get(DISABLED_ENV, "")
    return {part.strip() for part in raw.replace(";", ",").split(",") if part.strip()}


def register_driver(kind: str, name: str, obj: Any, distribution: str = "<in-process>") -> None:
    """Register a driver object in this process, as if it were installed under ``kind``."""
    _IN_PROCESS.setdefault(NAMESPACES.get(kind, kind), {})[name] = (obj, distribution)


def unregister_driver(kind: str, name: str) -> None:
    _IN_PROCESS.get(NAMESPACES.get(kind, kind), {}).pop(name, None)


@contextmanager
def in_process_driver(kind: str, name: str, obj: Any) -> Iterator[None]:
    """Context manager for tests: the driver exists only inside the block."""
    register_driver(kind, name, obj)
    try:
        yield
    finally:
        unregister_driver(kind, name)


def _entry_points(namespace: str) -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=namespace), key=lambda ep: ep.name)


def list_drivers(kind: str) -> list[DriverInfo]:
    """Metadata of every driver of ``kind`` (``backends``, ``sources``...), nothing imported."""
    namespace = NAMESPACES.get(kind, kind)
    disabled = disabled_names()
    infos: dict[str, DriverInfo] = {}
    for ep in _entry_points(namespace):
        dist = ep.dist
        info = DriverInfo(
            name=ep.name,
            namespace=namespace,
            target=ep.value,
            distribution=dist.metadata["Name"] if dist is not None else "?",
            version=dist.version if dist is not None else "?",
        )
        if ep.name in infos:
            info.status, info.reason = "error", f"name {ep.name!r} registered twice"
        infos[ep.name] = info
    for name, (obj, distribution) in _IN_PROCESS.get(namespace, {}).items():
        infos[name] = DriverInfo(
            name=name, namespace=namespace, target="<in-process>", distribution=distribution,
            version="-", obj=obj,
        )
    for info in infos.values():
        if info.name in disabled or info.distribution in disabled:
            info.status, info.reason = "disabled", f"disabled by {DISABLED_ENV}"
    return [infos[name] for name in sorted(infos)]


def check_api_version(obj: Any) -> tuple[int | None, str]:
    """The driver's declared API version, and why it cannot be used ("" when it can)."""
    declared = getattr(obj, "api_version", None)
    if not isinstance(declared, int) or isinstance(declared, bool):
        return None, "declares no integer api_version"
    if declared < MIN_PLUGIN_API_VERSION:
        return declared, (
            f"too old: written for plugin API {declared}, walle-core needs at least "
            f"{MIN_PLUGIN_API_VERSION}"
        )
    if declared > PLUGIN_API_VERSION:
        return declared, (
            f"too new: written for plugin API {declared}, walle-core provides "
            f"{PLUGIN_API_VERSION}; upgrade walle-core"
        )
    return declared, ""


def load_drivers(kind: str) -> list[DriverInfo]:
    """Every driver of ``kind`` with its object loaded, fail-soft (errors are in the infos)."""
    infos = list_drivers(kind)
    wanted = [i.name for i in infos if i.status == "unloaded" and i.target != "<in-process>"]
    if wanted:
        _load_installed(infos, wanted)
    for info in infos:
        if info.obj is not None and info.status in ("unloaded", "loaded"):
            info.api_version, problem = check_api_version(info.obj)
            info.status, info.reason = ("error", problem) if problem else ("loaded", "")
    return infos


def _load_installed(infos: list[DriverInfo], names: list[str]) -> None:
    from stevedore import NamedExtensionManager

    by_name = {info.name: info for info in infos}
    namespace = infos[0].namespace

    def on_failure(_manager: Any, entrypoint: Any, error: BaseException) -> None:
        info = by_name.get(entrypoint.name)
        if info is not None:
            info.status, info.reason = "error", f"{type(error).__name__}: {error}"

    manager = NamedExtensionManager(
        namespace,
        names=names,
        invoke_on_load=False,
        on_load_failure_callback=on_failure,
        propagate_map_exceptions=False,
    )
    for extension in manager.extensions:
        by_name[extension.name].obj = extension.plugin


def load_driver(kind: str, name: str) -> Any:
    """The object of one driver, or a :class:`PluginError` saying why it cannot be had."""
    for info in load_drivers(kind):
        if info.name == name:
            if info.status != "loaded":
                raise PluginError(f"{kind[:-1]} {name!r} cannot be used: {info.reason}")
            return info.obj
    known = ", ".join(i.name for i in list_drivers(kind)) or "none installed"
    raise PluginError(f"no {kind[:-1]} named {name!r} (known: {known})")


class PluginError(LookupError):
    """A requested plugin is missing, broken or disabled."""
