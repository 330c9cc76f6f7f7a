"""Stream runtime commands: ``walle stream run|bench|sources``.

Imports of the runtime happen inside the command bodies so that ``walle --help`` stays fast.
Source options are not declared here: anything after the known options (``--users 100``) is handed
to the chosen source plugin, which declares and converts its own options.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

stream_app = typer.Typer(help="On-device stream runtime: run tasks over events, benchmark it.",
                         no_args_is_help=True)


def _source_options(args: list[str]) -> dict[str, str]:
    """``["--users", "10", "--fast"]`` → ``{"users": "10", "fast": "true"}``."""
    options: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise typer.BadParameter(f"unexpected argument {arg!r}")
        name = arg[2:]
        if "=" in name:
            name, value = name.split("=", 1)
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            value = args[i + 1]
            i += 1
        else:
            value = "true"
        options[name.replace("-", "_")] = value
        i += 1
    return options


@stream_app.command(
    "run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def run(
    ctx: typer.Context,
    source: str = typer.Option(..., "--source", help="Source plugin id (walle.sources)."),
    task: list[Path] = typer.Option(..., "--task", help="Task directory (repeatable)."),
    output: Path | None = typer.Option(None, "--output", help="Write features as JSON lines."),
    state: Path = typer.Option(Path(".walle/stream-state.sqlite"), "--state",
                               help="SQLite file for features, state and checkpoints."),
    fresh: bool = typer.Option(False, "--fresh", help="Ignore any checkpoint; start over."),
    checkpoint_every: int = typer.Option(20_000, "--checkpoint-every",
                                         help="Commit a checkpoint every N records."),
    limit: int | None = typer.Option(None, "--limit", help="Stop (checkpointed) after N records."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Run stream tasks over a source's events; resumes from the last checkpoint in --state.

    Source options follow, e.g. `--source replay --path events.jsonl` or
    `--source synthetic --users 100 --minutes 10`."""
    from walle_core.stream.report import upload_report
    from walle_core.stream.runtime import StreamRuntime
    from walle_core.stream.source import SourceError, load_source
    from walle_core.stream.store import StreamStore
    from walle_core.stream.task import TaskError, load_task

    try:
        source_cls = load_source(source)
        src = source_cls.from_options(_source_options(list(ctx.args)))
        tasks = [load_task(path) for path in task]
    except (SourceError, TaskError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    store = StreamStore(state)
    runtime = StreamRuntime(tasks, store, checkpoint_every=checkpoint_every)
    stats = _run_with_progress(runtime, src, fresh, limit, progress and not as_json)
    summary: dict[str, Any] = {"source": source, "tasks": [t.name for t in tasks],
                               **stats.to_dict(), "features_stored": store.count_features(),
                               "finished": runtime.finished()}
    if runtime.finished():
        summary["upload"] = upload_report(store, src.events())
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        with output.open("w") as handle:
            for record in store.features():
                handle.write(json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n")
    store.close()
    _print_summary(summary, as_json)


def _run_with_progress(runtime: Any, src: Any, fresh: bool, limit: int | None,
                       show: bool) -> Any:
    if not show:
        return runtime.run(src, fresh=fresh, limit=limit)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("[bold]stream"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as bar:
        job = bar.add_task("events", total=limit or src.total())
        return runtime.run(src, fresh=fresh, limit=limit,
                           progress=lambda n: bar.advance(job, n))


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 10 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="stream run", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    upload = summary.pop("upload", None)
    for name, value in summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
        table.add_row(name, _fmt(value))
    if upload:
        for name, value in upload.items():
            table.add_row(f"upload.{name}", f"{value:.1%}" if "saving" in name else _fmt(value))
    Console().print(table)


@stream_app.command("bench")
def bench(
    tasks: int = typer.Option(100, "--tasks", help="Number of tasks' triggers loaded."),
    users: int = typer.Option(2000, "--users", help="Synthetic users."),
    minutes: float = typer.Option(20.0, "--minutes", help="Simulated minutes of events."),
    repeat: int = typer.Option(5, "--repeat", help="Runs per figure (the median is reported)."),
    seed: int = typer.Option(0, "--seed"),
    mix: str = typer.Option("both", "--mix",
                            help="Trigger mix: demanding (stress), realistic, or both."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Measure the runtime alone on one core: trie throughput, full runtime, latency."""
    from walle_core.stream.bench import MIXES, bench_events, run_bench

    mixes = list(MIXES) if mix == "both" else [mix]
    if any(name not in MIXES for name in mixes):
        raise typer.BadParameter(f"--mix must be one of {', '.join(MIXES)} or both")
    events = bench_events(users, minutes, seed)
    results = {name: run_bench(tasks=tasks, repeat=repeat, seed=seed, mix=name, events=events)
               for name in mixes}
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    for result in results.values():
        trie = result["trie"]
        typer.echo(f"[{result['mix']} mix] events {result['events']:,}  tasks {result['tasks']}  "
                   f"trie nodes {trie['nodes']} (variants {trie['variants']})  triggers fired "
                   f"{result['triggers_fired']:,} ({result['fires_per_event']:.2f} per event)")
        typer.echo(f"python loop floor   {result['loop_events_per_s']:>14,.0f} events/s")
        accel = result.get("accelerated")
        label = f"trie ({result['tasks']} tasks{', C accel' if accel else ''})"
        typer.echo(f"{label:<20}{result['trie_events_per_s']:>14,.0f} events/s   "
                   f"(runs: {result['trie_events_per_s_all']})")
        if accel and result.get("python_trie_events_per_s"):
            typer.echo(f"trie, pure Python   {result['python_trie_events_per_s']:>14,.0f} events/s")
        typer.echo(f"trie, previous eng. {result['previous_trie_events_per_s']:>14,.0f} events/s   "
                   "(the per-cursor engine before tuning, same events)")
        typer.echo(f"full runtime        {result['runtime_events_per_s']:>14,.0f} events/s")
        typer.echo(f"exit-to-stored-feature latency p50 {result['latency_p50_ms'] * 1000:.1f} us, "
                   f"p99 {result['latency_p99_ms'] * 1000:.1f} us  (median of {result['repeat']})")


@stream_app.command("sources")
def sources(as_json: bool = typer.Option(False, "--json")) -> None:
    """List installed source plugins."""
    from walle_core.stream.source import available_sources

    found = available_sources()
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    for name, doc in found.items():
        typer.echo(f"{name:<12} {doc}")


def register(app: typer.Typer) -> None:
    """Add the stream runtime's commands to ``app``."""
    app.add_typer(stream_app, name="stream")
