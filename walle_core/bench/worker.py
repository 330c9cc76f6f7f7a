"""Benchmark worker: measures one runner on one model inside its own process.

Run as ``python -m walle_core.bench.worker SPEC.json``; writes ``result.json`` and
``outputs.npz`` into the spec's ``out_dir``. A process per runner is what makes the memory figure
honest: peak memory = the kernel's resident high-water mark (VmHWM), reset just before the model
is loaded, minus the resident size at that moment (library imported, feeds built). So it counts
the model's weights, the engine's graph/arena/scratch and the outputs, not the Python runtime or
the library code. Where VmHWM cannot be reset it falls back to ru_maxrss (which then also counts
any earlier peak) and says so in the message.
"""

from __future__ import annotations

import json
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from walle_core.bench.results import RunnerResult, Status
from walle_core.bench.runners import RunnerUnavailable, make_runner
from walle_core.bench.stats import summarize


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def measure(spec: dict[str, Any]) -> tuple[RunnerResult, dict[str, Any]]:
    """Check, convert, load, warm up and time one runner; never raises."""
    name = spec["runner"]
    result = RunnerResult(runner=name, status=Status.FAILED)
    outputs: dict[str, Any] = {}
    try:
        from walle_core.bench.feeds import load_feeds

        runner = make_runner(name, spec.get("backend", "auto"))
        model = Path(spec["model"])
        applies_to = getattr(runner, "applies_to", None)
        if applies_to is not None:
            applies_to(model)
        result.version = runner.check()
        feeds = load_feeds(model, seed=spec.get("seed", 0))
        runner.convert(model, Path(spec["cache_dir"]))
        baseline_kb = _status_kb("VmRSS") or 0
        exact = _reset_peak()
        start = time.perf_counter_ns()
        runner.prepare(model, feeds, spec["threads"])
        result.load_ms = (time.perf_counter_ns() - start) / 1e6
        for _ in range(spec["warmup"]):
            outputs = runner.run(feeds)
        samples = []
        for _ in range(spec["runs"]):
            start = time.perf_counter_ns()
            outputs = runner.run(feeds)
            samples.append(time.perf_counter_ns() - start)
        result.median_ms, result.p90_ms = summarize(samples)
        result.runs = len(samples)
        peak_kb = _status_kb("VmHWM") if exact else None
        if peak_kb is None:
            peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            result.message = "peak from ru_maxrss (VmHWM reset unavailable)"
        result.peak_mb = max(peak_kb - baseline_kb, 0) / 1024.0
        result.status = Status.OK
    except RunnerUnavailable as exc:
        result.status, result.message = exc.status, str(exc)
    except Exception as exc:  # a runner failure is a result, not a crash of the bench
        result.status = Status.FAILED
        result.message = f"{type(exc).__name__}: {exc}"[:500]
        if spec.get("verbose"):
            traceback.print_exc()
    return result, outputs


def main(argv: list[str]) -> int:
    import numpy as np

    spec = json.loads(Path(argv[1]).read_text())
    out_dir = Path(spec["out_dir"])
    result, outputs = measure(spec)
    if outputs:
        np.savez(out_dir / "outputs.npz", *[np.asarray(v) for v in outputs.values()])
        (out_dir / "output_names.json").write_text(json.dumps(list(outputs)))
    (out_dir / "result.json").write_text(json.dumps(result.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
