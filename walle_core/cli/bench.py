"""Benchmark command: ``walle bench MODEL`` times Walle and its peers side by side.

Each runner runs in its own subprocess, one after the other, with the same feeds and threads;
see ``walle_core.bench`` for how figures are taken. Imports happen inside the command so that
``walle --help`` stays fast. Exit code 0 when the benchmark ran (a failed or missing runner is a
row of the result, not an error), 1 when the model cannot be found or built, 2 on bad options.
"""

from __future__ import annotations

import json

import typer


def register(app: typer.Typer) -> None:
    """Add ``walle bench`` to ``app``."""

    @app.command("bench")
    def bench(
        model: str = typer.Argument(
            None, help="An .onnx path, a model-set name (resnet18, din, ...) or light:NAME."
        ),
        backend: str = typer.Option("auto", "--backend", "-b", help="Walle backend to time."),
        vs: str = typer.Option(
            "onnxruntime,mnn,torch", "--vs", help="Comma-separated peers (onnxruntime,mnn,torch)."
        ),
        threads: int = typer.Option(2, "--threads", "-t", min=1, help="Threads for every runner."),
        runs: int = typer.Option(20, "--runs", "-n", min=1, help="Timed runs per runner."),
        warmup: int = typer.Option(3, "--warmup", "-w", min=0, help="Untimed warm-up runs."),
        all_models: bool = typer.Option(False, "--all", help="Run the whole model set."),
        timeout: float = typer.Option(900.0, "--timeout", help="Seconds per runner and model."),
        floor: bool = typer.Option(
            True, "--floor/--no-floor",
            help="Also measure each runner's floor (its peak on a one-Conv model) and report "
                 "peak memory above it.",
        ),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
        as_markdown: bool = typer.Option(False, "--markdown", help="Print markdown tables."),
    ) -> None:
        """Time a model with Walle and its peers: median/p90 latency, peak memory, ratios."""
        from rich.console import Console

        from walle_core.bench import report as rep
        from walle_core.bench.models import UnknownModel, all_model_names
        from walle_core.bench.suite import parse_runners, run_suite

        if not all_models and not model:
            raise typer.BadParameter("give a MODEL or --all")
        err = Console(stderr=True)
        try:
            models = all_model_names() if all_models else [model]
            reports = run_suite(models, parse_runners(vs), threads=threads, warmup=warmup,
                                runs=runs, backend=backend, console=err, timeout=timeout,
                                floor=floor)
        except (UnknownModel, FileNotFoundError) as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc
        if as_json:
            typer.echo(json.dumps(rep.to_json(reports), indent=1))
            return
        if as_markdown:
            typer.echo(rep.markdown(reports))
            return
        out = Console()
        if not out.is_terminal:  # files and pipes: do not squeeze the table into 80 columns
            out = Console(width=140)
        if len(reports) > 1:
            out.print(rep.wide_table(reports))
        else:
            out.print(rep.model_table(reports[0]))
        for line in [n for r in reports for n in rep.notes(r)]:
            out.print(f"  [dim]{line}[/dim]", highlight=False)
        if len(reports) > 1:
            out.print(rep.summary_table(reports))
