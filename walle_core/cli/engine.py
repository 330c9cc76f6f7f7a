"""Engine commands: ``walle model inspect|explain``, ``walle run``, ``walle conformance``.

Command bodies import the engine lazily so ``walle --help`` stays fast. Exit codes: 0 success,
1 a check failed (conformance below a threshold), 2 bad input (model, feeds, backend name).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

model_app = typer.Typer(help="Look inside a model: what it is and what the engine makes of it.",
                        no_args_is_help=True)


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(2)


def _dims(values: list[str]) -> dict[str, int]:
    out = {}
    for item in values:
        name, _, value = item.partition("=")
        out[name] = int(value)
    return out


@model_app.command("inspect")
def inspect_cmd(
    model: Path = typer.Argument(..., help="ONNX model file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Inputs, outputs, op histogram, parameter count and a FLOPs estimate."""
    from walle_core.frontend.onnx import load_model
    from walle_core.ir.errors import WalleError
    from walle_core.runtime.explain import inspect_model

    try:
        info = inspect_model(load_model(model))
    except WalleError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for kind in ("inputs", "outputs"):
        table = Table(title=kind)
        for col in ("name", "dtype", "shape"):
            table.add_column(col)
        for v in info[kind]:
            table.add_row(v["name"], v["dtype"], str(list(v["shape"] or [])))
        console.print(table)
    hist = Table(title=f"ops ({info['nodes']} nodes)")
    hist.add_column("op")
    hist.add_column("count", justify="right")
    for op, n in info["op_histogram"].items():
        hist.add_row(op, str(n))
    console.print(hist)
    console.print(f"parameters: {info['parameters']:,}"
                  + (f" ({info['parameters_after_folding']:,} after constant folding)"
                     if info.get("parameters_after_folding") else ""))
    flops = info.get("flops")
    console.print(f"FLOPs: {flops:,}" if flops is not None else info.get("flops_note", ""))


@model_app.command("explain")
def explain_cmd(
    model: Path = typer.Argument(..., help="ONNX model file."),
    backend: str = typer.Option("auto", "--backend",
                                help="Backend, comma-separated backends to search, or auto."),
    dim: list[str] = typer.Option([], "--dim", help="Symbolic dim value, NAME=INT."),
    runs: int = typer.Option(5, "--runs", help="Runs to time each op (0: estimates only)."),
    threads: int = typer.Option(0, "--threads", help="Threads per backend (0: its default)."),
    top: int = typer.Option(25, "--top", help="Ops to list, most expensive first (0: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """What the engine made of a model: decomposition, fusion, memory plan, and the search's
    choice of backend and algorithm per op with estimated and measured time."""
    from walle_core.ir.errors import WalleError
    from walle_core.runtime.explain import explain_session
    from walle_core.runtime.session import Session

    try:
        t0 = time.perf_counter()
        session = Session(model, backend=backend, threads=threads or None)
        created = time.perf_counter() - t0
        report = explain_session(session, _dims(dim), measure_runs=runs)
        report["session_seconds"] = round(created, 3)
    except WalleError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    steps = report.pop("steps", [])
    for key, value in report.items():
        if isinstance(value, dict):
            typer.echo(f"{key}:")
            for k, v in value.items():
                typer.echo(f"  {k:<28} {v}")
        else:
            typer.echo(f"{key}: {value:,}" if isinstance(value, int) else f"{key}: {value}")
    _print_steps(steps, top)


def _print_steps(steps: list[dict[str, Any]], top: int) -> None:
    from rich.console import Console
    from rich.table import Table

    key = "measured_us" if any("measured_us" in r for r in steps) else "estimated_us"
    order = sorted(steps, key=lambda r: -float(r.get(key, 0.0)))
    shown = order[:top] if top else order
    table = Table(title=f"ops by {key.replace('_us', '')} time ({len(shown)} of {len(steps)})")
    for col in ("op", "primitive", "backend", "algorithm", "est us", "measured us", "options"):
        table.add_column(col, justify="right" if "us" in col.split() else "left")
    for r in shown:
        table.add_row(str(r["op"])[:24], r["primitive"], r["backend"], str(r["algorithm"]),
                      str(r.get("estimated_us", "")), str(r.get("measured_us", "")),
                      str(len(r.get("alternatives", [])) or ""))
    Console(width=max(100, Console().width)).print(table)


def run_cmd(
    model: Path = typer.Argument(..., help="ONNX model file."),
    inputs: Path = typer.Option(..., "--inputs", help=".npz with one array per input name."),
    output: Path = typer.Option(..., "--output", help=".npz to write, one array per output."),
    backend: str = typer.Option("auto", "--backend", help="Backend name."),
) -> None:
    """Run MODEL on the arrays in --inputs; write outputs by name to --output."""
    import numpy as np

    from walle_core.ir.errors import WalleError
    from walle_core.runtime.session import Session

    try:
        with np.load(inputs, allow_pickle=False) as data:
            feeds = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise _fail(ValueError(f"{inputs}: cannot read inputs ({exc})")) from None
    try:
        result = Session(model, backend=backend).run(feeds)
    except WalleError as exc:
        raise _fail(exc) from None
    np.savez(output, **result)  # type: ignore[arg-type]
    for name, value in result.items():
        typer.echo(f"{name}: {value.dtype}{list(value.shape)}")


def conformance_cmd(
    backend: str = typer.Option("reference", "--backend", help="Backend name, or onnxruntime."),
    pattern: str = typer.Option("", "--filter", "-k", help="Only cases matching this regex."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (with every case)."),
    minimum: int = typer.Option(0, "--min-passed", help="Exit 1 if fewer cases pass."),
) -> None:
    """Run the ONNX backend test suite (CPU cases) and count passed/failed/unsupported."""
    from walle_core.testing.conformance import run_conformance

    if as_json:
        report = run_conformance(backend, pattern or None)
        typer.echo(report.to_json())
    else:
        from rich.progress import Progress

        with Progress(transient=True) as progress:
            task = progress.add_task(f"conformance on {backend}", total=None)
            report = run_conformance(backend, pattern or None,
                                     lambda r: progress.advance(task))
        counts = report.counts
        typer.echo(f"backend {backend}: {report.total} cases: "
                   + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if report.counts["passed"] < minimum:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the engine's commands to ``app``."""
    app.add_typer(model_app, name="model")
    app.command("run")(run_cmd)
    app.command("conformance")(conformance_cmd)
