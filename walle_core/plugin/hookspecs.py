"""Every hook a Walle plugin can implement: one typed module, documented in docs/plugins/hooks.md.

Hooks answer "who wants to take part?": each is called on every registered plugin. A plugin is a
module (or object) with functions decorated by :data:`hookimpl` and named exactly like a spec
below; it is registered through the ``walle.hooks`` entry-point namespace. Implementations may
accept any subset of a spec's parameters (pluggy passes only those they name).

Notification hooks (``walle_session_created``, ``walle_task_*``, ``walle_rollout_batch_advanced``)
are called through the facade in :mod:`walle_core.plugin.manager`, which isolates failures: a
plugin that raises is reported and unregistered, the caller goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT_NAME = "walle"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

MetricsExporter = Callable[[str, float, dict[str, str]], None]
"""``exporter(metric_name, value, labels)``: receives every metric Walle records."""


@hookspec
def walle_register_commands(cli: Any) -> None:
    """Add commands to the ``walle`` command line.

    :param cli: the root ``typer.Typer`` application; call ``cli.command()(fn)`` or
        ``cli.add_typer(sub_app, name=...)``. Names already taken by the core win.
    """


@hookspec
def walle_register_metrics_exporters(register: Callable[[str, MetricsExporter], None]) -> None:
    """Offer metrics exporters (Prometheus, StatsD, a log file...).

    :param register: call ``register(name, exporter)`` once per exporter; the core owns the
        naming and rejects duplicates.
    """


@hookspec
def walle_session_created(
    model: str, backend: str, inputs: dict[str, Any], outputs: dict[str, Any], setup_s: float
) -> None:
    """An engine session was created and planned.

    :param model: a label for the model (its path, or ``<bytes>`` / ``<graph>``).
    :param backend: the backend (or ``"auto"`` assignment summary) chosen for the session.
    :param inputs: input name -> description (dtype and shape as text).
    :param outputs: output name -> description.
    :param setup_s: seconds spent loading, decomposing, searching and planning.
    """


@hookspec
def walle_task_started(task: str, version: str) -> None:
    """A task script started on this device.

    :param task: the task's name.
    :param version: the task release it runs (a commit id).
    """


@hookspec
def walle_task_finished(
    task: str, version: str, ok: bool, error: str | None, duration_s: float
) -> None:
    """A task script finished, well or not.

    :param task: the task's name.
    :param version: the task release it ran.
    :param ok: whether it completed without error.
    :param error: the error message when ``ok`` is false, else ``None``.
    :param duration_s: wall time of the run in seconds.
    """


@hookspec
def walle_rollout_batch_advanced(
    release: str, batch: int, fraction: float, state: str
) -> None:
    """A gray release moved: a batch advanced, paused or rolled back.

    :param release: the release id.
    :param batch: index of the batch now current (0-based).
    :param fraction: fraction of the targeted fleet the release now covers (0..1).
    :param state: ``"advanced"``, ``"paused"``, ``"rolled_back"`` or ``"completed"``.
    """


def hook_names() -> list[str]:
    """Names of every hook specification in this module."""
    return sorted(name for name, value in globals().items()
                  if name.startswith("walle_") and callable(value))


def signature_text(name: str) -> str:
    """``name(param: type, ...) -> type`` exactly as written in this module (used by the docs)."""
    import inspect

    signature = inspect.signature(globals()[name])
    params = ", ".join(
        f"{p.name}: {p.annotation}" if p.annotation is not p.empty else p.name
        for p in signature.parameters.values()
    )
    return f"{name}({params}) -> {signature.return_annotation}"
