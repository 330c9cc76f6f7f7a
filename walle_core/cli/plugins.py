"""``walle backends|sources|policies list`` and ``walle plugins list``.

Plain listings read entry-point metadata and import only the plugin modules themselves (which must
be light); ``--probe`` runs each backend's real smoke operation.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from walle_core.plugin.probing import DriverStatus

STATUS_STYLE = {"available": "green", "unavailable": "yellow", "error": "red", "unprobed": "dim"}


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _device_text(devices: list[dict[str, Any]]) -> str:
    return "\n".join(f"{d['name']} ({d['kind']})" for d in devices)


def _print_driver_table(title: str, rows: list[DriverStatus], with_devices: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("name", "distribution", "version", "api", "status", "reason"):
        table.add_column(column, overflow="fold")
    if with_devices:
        table.add_column("devices", overflow="fold")
    for row in rows:
        style = STATUS_STYLE.get(row.status, "")
        cells = [row.name, row.distribution, row.version,
                 "-" if row.api_version is None else str(row.api_version),
                 f"[{style}]{row.status}[/]", row.reason]
        if with_devices:
            cells.append(_device_text(row.devices))
        table.add_row(*cells)
    if not rows:
        table.caption = "none installed"
    Console().print(table)


def _list_drivers(kind: str, probe: bool, as_json: bool, with_devices: bool) -> None:
    from walle_core.plugin.probing import driver_statuses

    rows = driver_statuses(kind, probe=probe)
    if as_json:
        _print_json([row.to_dict() for row in rows])
    else:
        _print_driver_table(kind.capitalize(), rows, with_devices)


def _driver_app(kind: str, help_text: str, probe_help: str) -> typer.Typer:
    sub = typer.Typer(help=help_text, no_args_is_help=True)

    @sub.command("list")
    def list_command(
        probe: bool = typer.Option(False, "--probe", help=probe_help),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        _list_drivers(kind, probe, as_json, with_devices=(kind == "backends"))

    list_command.__doc__ = f"List installed {kind} with their status."
    return sub


def plugin_inventory() -> list[dict[str, Any]]:
    """Every distribution that plugs into Walle, its drivers, its hooks and its errors."""
    from walle_core.plugin.discovery import NAMESPACES, load_drivers
    from walle_core.plugin.manager import get_hooks

    dists: dict[str, dict[str, Any]] = {}

    def entry(distribution: str, version: str) -> dict[str, Any]:
        return dists.setdefault(distribution, {
            "distribution": distribution, "version": version, "drivers": [], "hooks": [],
            "errors": [],
        })

    for kind in NAMESPACES:
        for info in load_drivers(kind):
            item = entry(info.distribution, info.version)
            item["drivers"].append(f"{info.namespace}:{info.name}")
            if info.status in ("error", "disabled"):
                item["errors"].append(f"{info.namespace}:{info.name}: {info.reason}")
    hooks = get_hooks()
    for name, distribution in hooks.distributions.items():
        item = entry(distribution, _dist_version(distribution))
        item["hooks"].extend(hooks.implemented_hooks(name))
    for failure in hooks.failures:
        item = entry(failure.distribution, _dist_version(failure.distribution))
        item["errors"].append(f"walle.hooks:{failure.name}: {failure.reason}")
    return [dists[name] for name in sorted(dists)]


def _dist_version(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "-"


def _plugins_app() -> typer.Typer:
    sub = typer.Typer(help="Plugin distributions and the hooks they implement.",
                      no_args_is_help=True)

    @sub.command("list")
    def list_command(
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        """List every distribution that plugs into Walle, with its drivers and hooks."""
        inventory = plugin_inventory()
        if as_json:
            _print_json(inventory)
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title="Plugins", title_justify="left")
        for column in ("distribution", "version", "drivers", "hooks", "errors"):
            table.add_column(column, overflow="fold")
        for item in inventory:
            table.add_row(item["distribution"], item["version"], "\n".join(item["drivers"]),
                          "\n".join(item["hooks"]), "[red]" + "\n".join(item["errors"]) + "[/]")
        Console().print(table)

    return sub


def register(app: typer.Typer) -> None:
    """Add ``backends``, ``plugins``, ``sources`` and ``policies`` listings to ``app``."""
    app.add_typer(_driver_app("backends", "Compute backends (walle.backends).",
                              "Run a real smoke operation on each backend."), name="backends")
    app.add_typer(_driver_app("sources", "Event sources of the stream runtime (walle.sources).",
                              "Run each source's availability check."), name="sources")
    app.add_typer(_driver_app("policies", "Deployment targeting policies (walle.policies).",
                              "Run each policy's availability check."), name="policies")
    app.add_typer(_plugins_app(), name="plugins")
