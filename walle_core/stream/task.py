"""Stream tasks: a directory with a manifest (``task.toml``) and a script (``task.py``).

The manifest declares the trigger; the script declares what to compute::

    # task.toml
    name = "ipv_feature"
    version = "1"
    script = "task.py"
    [trigger]
    pattern = "page_enter[page=item_detail] ** page_exit[page=item_detail]"
    within = "2h"                 # optional time limit of the whole match
    # not_followed_by = "buy"     # optional, with not_within = "10m"

    # task.py
    def on_match(match):          # called with each Match of the trigger
        return [{"user": match.key, ...}]   # feature records to store and upload
    def pipelines():              # optional: per-event operator chains (their records are stored)
        return [Pipeline("...")...]

A task may have a trigger, pipelines, or both. The script is loaded by path under a private module
name, so two tasks may both call their file ``task.py``.
"""

from __future__ import annotations

import importlib.util
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from walle_core.stream.operators import Pipeline
from walle_core.stream.pattern import Trigger, parse_duration_ms
from walle_core.stream.triggers import Match

OnMatch = Callable[[Match], Iterable[dict[str, Any]]]


class TaskError(ValueError):
    """A task directory that cannot be loaded; the message names the file and the problem."""


@dataclass
class StreamTask:
    name: str
    trigger: Trigger | None = None
    on_match: OnMatch | None = None
    pipelines: list[Pipeline] = field(default_factory=list)
    version: str = "0"
    path: Path | None = None


def load_task(directory: str | Path) -> StreamTask:
    """Load one task directory; raise :class:`TaskError` with a clear reason."""
    root = Path(directory)
    manifest_path = root / "task.toml"
    if not manifest_path.is_file():
        raise TaskError(f"{root}: no task.toml")
    try:
        manifest = tomllib.loads(manifest_path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise TaskError(f"{manifest_path}: {exc}") from exc
    name = manifest.get("name") or root.name
    trigger = None
    if "trigger" in manifest:
        spec = manifest["trigger"]
        try:
            trigger = Trigger(pattern=spec["pattern"],
                              within_ms=parse_duration_ms(spec.get("within")),
                              not_followed_by=spec.get("not_followed_by"),
                              not_within_ms=parse_duration_ms(spec.get("not_within")))
        except (KeyError, ValueError) as exc:
            raise TaskError(f"{manifest_path}: bad [trigger]: {exc}") from exc
    module = _load_script(root / manifest.get("script", "task.py"), name)
    on_match = getattr(module, "on_match", None)
    if trigger is not None and on_match is None:
        raise TaskError(f"{root}: the task has a trigger but its script defines no on_match")
    make_pipelines = getattr(module, "pipelines", None)
    pipelines = list(make_pipelines()) if make_pipelines is not None else []
    if trigger is None and not pipelines:
        raise TaskError(f"{root}: the task has neither a [trigger] nor pipelines()")
    return StreamTask(name=name, trigger=trigger, on_match=on_match, pipelines=pipelines,
                      version=str(manifest.get("version", "0")), path=root)


def _load_script(path: Path, task_name: str) -> Any:
    if not path.is_file():
        raise TaskError(f"{path}: script not found")
    spec = importlib.util.spec_from_file_location(f"walle_task_{task_name}", path)
    if spec is None or spec.loader is None:
        raise TaskError(f"{path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
