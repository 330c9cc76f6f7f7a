"""pluggy hooks: registration, the typed facade, failure isolation, API version checks."""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import pytest

from walle_core.plugin import PLUGIN_API_VERSION, hookspecs
from walle_core.plugin.hookspecs import hookimpl
from walle_core.plugin.manager import Hooks, new_plugin_manager


def spec_names() -> list[str]:
    return hookspecs.hook_names()


class Recorder:
    api_version = PLUGIN_API_VERSION

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    @hookimpl
    def walle_task_started(self, task: str, version: str) -> None:
        self.calls.append(("started", (task, version)))

    @hookimpl
    def walle_task_finished(self, task: str, ok: bool) -> None:  # a subset of the arguments
        self.calls.append(("finished", (task, ok)))


class Exploding:
    @hookimpl
    def walle_task_started(self, task: str) -> None:
        raise ValueError(f"cannot handle {task}")


def test_facade_has_one_method_per_hook_spec() -> None:
    facade = {name for name, _ in inspect.getmembers(Hooks, inspect.isfunction)}
    for spec in spec_names():
        assert spec.removeprefix("walle_") in facade, f"Hooks lacks a method for {spec}"


def test_hooks_reach_registered_plugins() -> None:
    hooks = Hooks(new_plugin_manager())
    recorder = Recorder()
    hooks.register(recorder, "recorder")
    hooks.task_started("ipv", "abc123")
    hooks.task_finished("ipv", "abc123", ok=True, error=None, duration_s=0.5)
    assert recorder.calls == [("started", ("ipv", "abc123")), ("finished", ("ipv", True))]
    assert hooks.implemented_hooks("recorder") == ["walle_task_finished", "walle_task_started"]


def test_a_raising_plugin_is_reported_unregistered_and_the_rest_still_run() -> None:
    hooks = Hooks(new_plugin_manager())
    recorder = Recorder()
    hooks.register(Exploding(), "exploding")
    hooks.register(recorder, "recorder")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hooks.task_started("ipv", "v1")
    assert recorder.calls == [("started", ("ipv", "v1"))]
    assert any("cannot handle ipv" in str(w.message) for w in caught)
    assert hooks.failures[0].name == "exploding"
    assert hooks.pm.get_plugin("exploding") is None
    hooks.task_started("ipv", "v2")  # no second failure: it is gone
    assert len(hooks.failures) == 1


def test_plugin_declaring_a_future_api_is_refused() -> None:
    hooks = Hooks(new_plugin_manager())

    class Future(Recorder):
        api_version = PLUGIN_API_VERSION + 5

    hooks.register(Future(), "future")
    assert hooks.pm.get_plugin("future") is None
    assert "too new" in hooks.failures[0].reason


def test_an_unknown_walle_hook_is_rejected_by_validation() -> None:
    import pluggy

    class Typo:
        @hookimpl
        def walle_task_strated(self, task: str) -> None: ...

    with pytest.raises(pluggy.PluginValidationError):
        Hooks(new_plugin_manager()).register(Typo(), "typo")


def test_register_commands_hook_adds_a_cli_command() -> None:
    import typer
    from typer.testing import CliRunner

    class Commands:
        @hookimpl
        def walle_register_commands(self, cli: typer.Typer) -> None:
            @cli.command("hello")
            def hello(name: str = "fleet") -> None:
                typer.echo(f"hello {name}")

    app = typer.Typer()

    @app.command("noop")
    def noop() -> None: ...

    hooks = Hooks(new_plugin_manager())
    hooks.register(Commands(), "commands")
    hooks.register_commands(app)
    result = CliRunner().invoke(app, ["hello", "--name", "walle"])
    assert result.exit_code == 0 and "hello walle" in result.output


def test_metrics_exporters_are_named_by_the_core() -> None:
    exported: list[tuple[str, float]] = []

    class Exporter:
        @hookimpl
        def walle_register_metrics_exporters(self, register: Any) -> None:
            register("memory", lambda name, value, labels: exported.append((name, value)))

    hooks = Hooks(new_plugin_manager())
    hooks.register(Exporter(), "exporter")
    registry: dict[str, Any] = {}

    def register(name: str, exporter: Any) -> None:
        if name in registry:
            raise ValueError(f"exporter {name!r} registered twice")
        registry[name] = exporter

    hooks.register_metrics_exporters(register)
    registry["memory"]("latency_ms", 3.5, {})
    assert exported == [("latency_ms", 3.5)]
