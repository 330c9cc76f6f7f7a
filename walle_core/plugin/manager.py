"""The pluggy plugin manager and the typed facade through which the core calls hooks.

Call sites use :class:`Hooks` (one method per hook, so arguments are type-checked) rather than
``pm.hook.walle_*``. Hook plugins come from the ``walle.hooks`` entry points, loaded fail-soft:
one that fails to import, declares an unsupported ``api_version`` or is disabled through
``WALLE_DISABLED_PLUGINS`` is recorded in :attr:`Hooks.failures` and skipped. A notification hook
that raises is reported and its plugin unregistered; the core goes on.
``WALLE_TRACE_PLUGINS=1`` prints every hook call on stderr.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from walle_core.plugin import hookspecs
from walle_core.plugin.discovery import (
    DISABLED_ENV,
    HOOKS_NAMESPACE,
    check_api_version,
    disabled_names,
)


@dataclass
class HookPluginFailure:
    name: str
    distribution: str
    reason: str


class Hooks:
    """Typed facade over the plugin manager: one method per hook specification."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self.failures: list[HookPluginFailure] = []
        self.distributions: dict[str, str] = {}  # registered plugin name -> distribution

    def register(self, plugin: Any, name: str, distribution: str = "<in-process>") -> None:
        """Register a hook plugin object, checking its ``api_version`` if it declares one."""
        if hasattr(plugin, "api_version"):
            _, problem = check_api_version(plugin)
            if problem:
                self.failures.append(HookPluginFailure(name, distribution, problem))
                return
        self.pm.register(plugin, name=name)
        try:  # a walle_* function that matches no specification is a typo: refuse the plugin
            self.pm.check_pending()
        except pluggy.PluginValidationError:
            self.pm.unregister(name=name)
            raise
        self.distributions[name] = distribution

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.distributions.pop(name, None)

    def _notify(self, hook_name: str, **kwargs: Any) -> None:
        caller = getattr(self.pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            args = [kwargs[arg] for arg in impl.argnames]
            try:
                impl.function(*args)
            except Exception as error:
                reason = f"{hook_name} raised {type(error).__name__}: {error}"
                warnings.warn(f"walle plugin {impl.plugin_name!r} {reason}; unregistered",
                              RuntimeWarning, stacklevel=3)
                distribution = self.distributions.get(impl.plugin_name, "?")
                self.failures.append(HookPluginFailure(impl.plugin_name, distribution, reason))
                self.unregister(impl.plugin_name)

    # -- one method per hook ------------------------------------------------------------
    def register_commands(self, cli: Any) -> None:
        self._notify("walle_register_commands", cli=cli)

    def register_metrics_exporters(
        self, register: Callable[[str, hookspecs.MetricsExporter], None]
    ) -> None:
        self._notify("walle_register_metrics_exporters", register=register)

    def session_created(
        self, model: str, backend: str, inputs: dict[str, Any], outputs: dict[str, Any],
        setup_s: float,
    ) -> None:
        self._notify("walle_session_created", model=model, backend=backend, inputs=inputs,
                     outputs=outputs, setup_s=setup_s)

    def task_started(self, task: str, version: str) -> None:
        self._notify("walle_task_started", task=task, version=version)

    def task_finished(
        self, task: str, version: str, ok: bool, error: str | None, duration_s: float
    ) -> None:
        self._notify("walle_task_finished", task=task, version=version, ok=ok, error=error,
                     duration_s=duration_s)

    def rollout_batch_advanced(self, release: str, batch: int, fraction: float, state: str) -> None:
        self._notify("walle_rollout_batch_advanced", release=release, batch=batch,
                     fraction=fraction, state=state)

    def implemented_hooks(self, name: str) -> list[str]:
        """Names of the hooks that the plugin registered as ``name`` implements."""
        plugin = self.pm.get_plugin(name)
        if plugin is None:
            return []
        return sorted(c.name for c in self.pm.get_hookcallers(plugin) or [])


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    if os.environ.get("WALLE_TRACE_PLUGINS"):
        pm.trace.root.setwriter(lambda message: sys.stderr.write(f"[walle hooks] {message}"))
        pm.enable_tracing()
    return pm


def load_hook_plugins(hooks: Hooks) -> None:
    """Register every installed ``walle.hooks`` entry point, fail-soft."""
    disabled = disabled_names()
    for ep in sorted(metadata.entry_points(group=HOOKS_NAMESPACE), key=lambda e: e.name):
        distribution = ep.dist.metadata["Name"] if ep.dist is not None else "?"
        if ep.name in disabled or distribution in disabled:
            hooks.failures.append(HookPluginFailure(ep.name, distribution,
                                                    f"disabled by {DISABLED_ENV}"))
            continue
        start = time.perf_counter()
        try:
            plugin = ep.load()
        except Exception as error:
            hooks.failures.append(HookPluginFailure(ep.name, distribution,
                                                    f"{type(error).__name__}: {error}"))
            continue
        try:
            hooks.register(plugin, ep.name, distribution)
        except Exception as error:  # pluggy rejects impls that do not match a spec
            hooks.failures.append(HookPluginFailure(ep.name, distribution,
                                                    f"{type(error).__name__}: {error}"))
        if os.environ.get("WALLE_TRACE_PLUGINS"):
            sys.stderr.write(f"[walle hooks] loaded {ep.name} in "
                             f"{time.perf_counter() - start:.3f}s\n")


_HOOKS: Hooks | None = None


def get_hooks() -> Hooks:
    """The process-wide hooks facade, with installed hook plugins loaded on first use."""
    global _HOOKS
    if _HOOKS is None:
        _HOOKS = Hooks(new_plugin_manager())
        load_hook_plugins(_HOOKS)
    return _HOOKS


def reset_hooks() -> None:
    """Forget the process-wide manager (tests)."""
    global _HOOKS
    _HOOKS = None
