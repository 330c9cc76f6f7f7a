"""Start-up and search time: what a new process pays before its first result.

    .venv/bin/python benchmarks/startup.py [--model mobilenetv2] [--search-model light:resnet50]
        [--backend auto] [--threads 2] [--repeat 5] [--json]

Two figures, medians over ``--repeat`` fresh subprocesses (caches warm: calibration profiles,
measured close calls and numba's kernel cache are filled by one untimed process first):

* **new process to first result** for ``--model``: ``import walle_core``, ``Session(...)``,
  first ``run`` (planning, search and kernel loading happen there for dynamic-batch models);
* **search time** for ``--search-model``: ``Placement.seconds`` of its session, i.e. costing
  every candidate of every step and solving the assignment, without planning or compiling.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from walle_core import Session
t1 = time.perf_counter()
path, backend, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = Session(path, backend=backend, threads=threads or None)
t2 = time.perf_counter()
feeds = {}
for info in s.inputs:
    shape = [d if isinstance(d, int) else 1 for d in info.shape]
    feeds[info.name] = np.random.default_rng(0).standard_normal(shape).astype(info.dtype)
s.run(feeds)
t3 = time.perf_counter()
exe = next(e for e in s._plans.values() if e is not None)
print(json.dumps({"import_s": t1 - t0, "session_s": t2 - t1, "first_run_s": t3 - t2,
                  "total_s": t3 - t0, "search_s": exe.placement.seconds,
                  "method": exe.placement.method, "notes": exe.placement.notes,
                  "backends": sorted({b.name for b in exe.placement.backends})}))
"""


def resolve(name: str) -> str:
    from walle_core.bench.models import resolve as find

    return str(find(name)[1])


def child(path: str, backend: str, threads: int) -> dict[str, object]:
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads or 1))
    out = subprocess.run([sys.executable, "-c", CHILD, path, backend, str(threads)],
                         capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mobilenetv2")
    ap.add_argument("--search-model", default="light:resnet50")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    report: dict[str, object] = {}
    for label, name in (("startup", args.model), ("search", args.search_model)):
        path = resolve(name)
        child(path, args.backend, args.threads)  # warm every cache once, untimed
        runs = [child(path, args.backend, args.threads) for _ in range(args.repeat)]
        med = {k: statistics.median(float(r[k]) for r in runs)  # type: ignore[arg-type]
               for k in ("import_s", "session_s", "first_run_s", "total_s", "search_s")}
        report[label] = {"model": name, **med, "backends": runs[-1]["backends"],
                         "method": runs[-1]["method"], "notes": runs[-1]["notes"]}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    s, q = report["startup"], report["search"]
    print(f"{s['model']}: new process to first result {s['total_s']:.2f} s "  # type: ignore[index]
          f"(import {s['import_s']:.2f}, session {s['session_s']:.2f}, "  # type: ignore[index]
          f"first run {s['first_run_s']:.2f}; median of {args.repeat}; "  # type: ignore[index]
          f"backends {s['backends']})")  # type: ignore[index]
    print(f"{q['model']}: search {q['search_s'] * 1000:.1f} ms ({q['method']}; "  # type: ignore[index]
          f"{'; '.join(q['notes'])}; median of {args.repeat})")  # type: ignore[index]


if __name__ == "__main__":
    main()
