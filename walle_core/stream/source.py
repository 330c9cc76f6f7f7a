"""The source plugin contract and its discovery through the ``walle.sources`` entry points.

A source delivers raw events (JSON text or already-decoded dicts; the runtime validates both). It is
a class registered under ``walle.sources``; the entry-point name is its user-visible id
(``walle stream run --source replay``). The core never imports a source by name.

Resuming: :meth:`Source.events` takes ``start``, the number of records already consumed, and must
yield the same records from there as a fresh run would. Replay skips lines; a seeded generator
regenerates and skips. That offset is what the runtime checkpoints.

Options come from the command line as strings; a source declares ``options`` (name → converter and
help) and :meth:`Source.from_options` converts and checks them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from walle_core.backend import Availability
from walle_core.plugin import MIN_PLUGIN_API_VERSION, PLUGIN_API_VERSION

NAMESPACE = "walle.sources"
RawEvent = str | bytes | dict[str, Any]


@dataclass(frozen=True)
class SourceOption:
    """One command-line option of a source: how to convert it and what it means."""

    convert: Callable[[str], Any]
    help: str
    default: Any = None


class SourceError(ValueError):
    """A source that cannot be found, loaded or configured; the message says why."""


class Source:
    """Base class of event sources (subclass it, register under ``walle.sources``)."""

    name: ClassVar[str] = ""
    api_version: ClassVar[int] = PLUGIN_API_VERSION
    requires: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[dict[str, SourceOption]] = {}

    @classmethod
    def probe(cls) -> Availability:
        """Can this source run here? Sources with no special needs are always available."""
        return Availability(ok=True)

    @classmethod
    def from_options(cls, values: Mapping[str, str]) -> Source:
        """Build from command-line strings (``{"users": "100"}``); unknown names are an error."""
        unknown = sorted(set(values) - set(cls.options))
        if unknown:
            known = ", ".join(f"--{n.replace('_', '-')}" for n in sorted(cls.options)) or "none"
            raise SourceError(f"source {cls.name!r} has no option {', '.join(unknown)}; "
                              f"its options: {known}")
        kwargs: dict[str, Any] = {}
        for opt_name, option in cls.options.items():
            if opt_name in values:
                try:
                    kwargs[opt_name] = option.convert(values[opt_name])
                except ValueError as exc:
                    raise SourceError(f"--{opt_name.replace('_', '-')}: {exc}") from exc
            else:
                kwargs[opt_name] = option.default
        return cls(**kwargs)

    def events(self, start: int = 0) -> Iterator[RawEvent]:
        """Yield raw events, skipping the first ``start`` records."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """Identifies this source's configuration; a checkpoint resumes only the same one."""
        return self.name

    def total(self) -> int | None:
        """The number of records, when cheaply known (for a progress bar)."""
        return None


def _manager(name: str) -> Any:
    from stevedore import DriverManager

    return DriverManager(namespace=NAMESPACE, name=name, invoke_on_load=False)


def available_sources() -> dict[str, str]:
    """Installed sources: name → first docstring line, or ``error: <reason>`` (never raises)."""
    from stevedore import ExtensionManager

    found: dict[str, str] = {}

    def failed(_manager: Any, entry_point: Any, exc: BaseException) -> None:
        found[entry_point.name] = f"error: {exc}"

    manager = ExtensionManager(namespace=NAMESPACE, invoke_on_load=False,
                               on_load_failure_callback=failed)
    for ext in manager:
        doc = (ext.plugin.__doc__ or "").strip().splitlines()
        found[ext.name] = doc[0] if doc else ""
    return dict(sorted(found.items()))


def load_source(name: str) -> type[Source]:
    """The source class registered as ``name``; :class:`SourceError` says why when it cannot."""
    try:
        plugin = _manager(name).driver
    except Exception as exc:  # stevedore raises NoMatches or the plugin's own import error
        known = ", ".join(n for n, d in available_sources().items()
                          if not d.startswith("error:")) or "none installed"
        raise SourceError(f"no usable source {name!r} ({exc.__class__.__name__}: {exc}); "
                          f"available: {known}") from exc
    if not (isinstance(plugin, type) and issubclass(plugin, Source)):
        raise SourceError(f"source {name!r} is not a walle_core.stream.source.Source subclass")
    if not MIN_PLUGIN_API_VERSION <= plugin.api_version <= PLUGIN_API_VERSION:
        raise SourceError(f"source {name!r} targets plugin API {plugin.api_version}; this core "
                          f"supports {MIN_PLUGIN_API_VERSION}..{PLUGIN_API_VERSION}")
    availability = plugin.probe()
    if not availability.ok:
        raise SourceError(f"source {name!r} is unavailable: {availability.reason}")
    return plugin
