"""Presenting results: a rich table per model, a summary over a model set, or JSON.

The summary is what the CPU-backend targets are read from: for each runner, the geometric mean
over the models both ran of (runner median / onnxruntime median) and of (runner peak memory /
onnxruntime peak memory), and Walle's geometric-mean ratio to each peer. Where the floors were
measured it adds the geometric mean of (model MB / onnxruntime's model MB): peak memory above
each runner's own floor (``RunnerResult.model_mb``), so an engine's fixed start-up cost (numba's
runtime and LLVM for Walle) is shown apart from what each model costs. Both are printed; the
raw peak stays the headline figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from walle_core.bench.results import BenchReport, RunnerResult, Status
from walle_core.bench.stats import geomean

BASELINE = "onnxruntime"


def _num(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def _diff(result: RunnerResult, reference: str | None) -> str:
    if result.runner == reference:
        return "(ref)"
    return "-" if result.max_diff is None else f"{result.max_diff:.2e}"


def model_table(report: BenchReport) -> Any:
    """One model: runner, status, median, p90, peak MB, walle/peer, max diff."""
    from rich.table import Table

    title = (f"{report.model}  ({report.threads} threads, {report.warmup} warm-up, "
             f"{report.runs} runs; diff vs {report.reference or '-'})")
    table = Table(title=title)
    for column in ("runner", "version", "median ms", "p90 ms", "peak MB", "floor MB",
                   "model MB", "walle/peer", "max diff", "status"):
        left = column in ("runner", "version", "status")
        table.add_column(column, justify="left" if left else "right")
    for r in report.results:
        table.add_row(r.runner, r.version, _num(r.median_ms), _num(r.p90_ms),
                      _num(r.peak_mb, "{:.1f}"), _num(r.floor_mb, "{:.1f}"),
                      _num(r.model_mb, "{:.1f}"), _num(r.ratio), _diff(r, report.reference),
                      r.status.value)
    return table


def notes(report: BenchReport) -> list[str]:
    """Why each runner that did not measure did not (printed under the table)."""
    return [f"{report.model} / {r.runner}: {r.message}" for r in report.results if r.message]


def summary_rows(reports: Sequence[BenchReport]) -> list[dict[str, Any]]:
    """Per runner: geomean latency and memory vs onnxruntime, and walle/runner geomean."""
    runners: list[str] = []
    for report in reports:
        runners += [r.runner for r in report.results if r.runner not in runners]
    rows = []
    for name in runners:
        lat, mem, model_mem, vs_walle = [], [], [], []
        for report in reports:
            res, base, walle = report.get(name), report.get(BASELINE), report.get("walle")
            if res is None or res.status is not Status.OK:
                continue
            if base and base.status is Status.OK and base.median_ms and res.median_ms:
                lat.append(res.median_ms / base.median_ms)
                if base.peak_mb and res.peak_mb:
                    mem.append(res.peak_mb / base.peak_mb)
                if base.model_mb and res.model_mb is not None:
                    # a model that adds nothing above the floor counts as 0.5 MB, not 0
                    model_mem.append(max(res.model_mb, 0.5) / max(base.model_mb, 0.5))
            if res.ratio is not None and walle is not None:
                vs_walle.append(res.ratio)
        rows.append({"runner": name, "models": len(lat), "latency_vs_ort": geomean(lat),
                     "memory_vs_ort": geomean(mem),
                     "model_memory_vs_ort": geomean(model_mem),
                     "walle_over_runner": geomean(vs_walle),
                     "walle_models": len(vs_walle)})
    return rows


def summary_table(reports: Sequence[BenchReport]) -> Any:
    from rich.table import Table

    table = Table(title=f"geometric means over {len(reports)} models")
    for column in ("runner", "models", "latency / onnxruntime", "peak mem / onnxruntime",
                   "model mem / onnxruntime", "walle / runner (models)"):
        table.add_column(column, justify="left" if column == "runner" else "right")
    for row in summary_rows(reports):
        walle = _num(row["walle_over_runner"])
        table.add_row(row["runner"], str(row["models"]), _num(row["latency_vs_ort"]),
                      _num(row["memory_vs_ort"]), _num(row["model_memory_vs_ort"]),
                      f"{walle} ({row['walle_models']})")
    return table


def _cell(r: RunnerResult) -> str:
    """``median (peak MB)``, or ``median (peak / model MB)`` once the floor is known."""
    mem = _num(r.peak_mb, "{:.0f}")
    if r.model_mb is not None:
        mem += f" / {r.model_mb:.0f}"
    return f"{_num(r.median_ms)} ({mem})"


def wide_table(reports: Sequence[BenchReport]) -> Any:
    """Model set: one row per model, median ms (peak MB [/ model MB]) per runner."""
    from rich.table import Table

    runners: list[str] = []
    for report in reports:
        runners += [r.runner for r in report.results if r.runner not in runners]
    title = "median ms (peak MB / model MB) per model" if any(
        r.model_mb is not None for rep in reports for r in rep.results) else \
        "median ms (peak MB) per model"
    table = Table(title=title)
    table.add_column("model")
    for name in runners:
        table.add_column(name, justify="right")
    for report in reports:
        cells = []
        for name in runners:
            r = report.get(name)
            if r is None:
                cells.append("")
            elif r.status is Status.OK:
                cells.append(_cell(r))
            else:
                cells.append(r.status.value)
        table.add_row(report.model, *cells)
    return table


def to_json(reports: Sequence[BenchReport]) -> dict[str, Any]:
    return {"models": [r.to_json() for r in reports], "summary": summary_rows(reports)}


def markdown(reports: Sequence[BenchReport]) -> str:
    """The README's tables: median ms (peak MB) per model and runner, then the geomeans."""
    runners: list[str] = []
    for report in reports:
        runners += [r.runner for r in report.results if r.runner not in runners]
    lines = ["| model | " + " | ".join(f"{n} ms (MB)" for n in runners) + " | worst diff vs ref |",
             "|---|" + "---:|" * (len(runners) + 1)]
    for report in reports:
        cells = []
        for name in runners:
            r = report.get(name)
            ok = r is not None and r.status is Status.OK
            cells.append(_cell(r) if ok and r else (r.status.value if r else ""))
        diffs = [r.max_diff for r in report.results
                 if r.max_diff is not None and r.runner != report.reference]
        worst = f"{max(diffs):.1e} vs {report.reference}" if diffs else "-"
        lines.append(f"| {report.model} | " + " | ".join(cells) + f" | {worst} |")
    lines += ["", "| runner | models | latency / onnxruntime | peak memory / onnxruntime | "
              "model memory / onnxruntime | walle / runner |", "|---|---:|---:|---:|---:|---:|"]
    for row in summary_rows(reports):
        lines.append(f"| {row['runner']} | {row['models']} | {_num(row['latency_vs_ort'])} | "
                     f"{_num(row['memory_vs_ort'])} | {_num(row['model_memory_vs_ort'])} | "
                     f"{_num(row['walle_over_runner'])} |")
    floors = {r.runner: r.floor_mb for rep in reports for r in rep.results
              if r.floor_mb is not None}
    if floors:
        lines += ["", "floor MB (peak on the one-Conv floor model): " + ", ".join(
            f"{name} {mb:.1f}" for name, mb in floors.items())]
    return "\n".join(lines)
