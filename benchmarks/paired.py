"""Paired sessions: one model planned under several values of a module switch, timed in one
process in alternating blocks, so machine phases hit every configuration alike.

    .venv/bin/python benchmarks/paired.py MODEL MODULE ATTR VALUES [--blocks 20] [--runs 10]

``MODULE.ATTR`` is set to each of the comma-separated ``VALUES`` (Python literals) before that
session is created; the sessions then run in turn, ``--runs`` runs each per block, for
``--blocks`` blocks. Prints each session's median (ms) and its ratio to the first. Example,
the micro-kernel's packed-weights threshold of a local experiment::

    .venv/bin/python benchmarks/paired.py ~/.cache/walle/models/resnet50/model.onnx \\
        walle_backend_numba.conv APACK_BYTES "1<<62,1<<62,256<<10,256<<10"

Repeat a value (as above) to see the spread between identical sessions: on the shared 2-core
VM two sessions of one configuration differed by up to 4%, so only differences beyond that
spread, seen in repeated invocations, mean anything. Separate processes (A/B of package
copies) spread 4-5% there.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import statistics
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("module")
    parser.add_argument("attr")
    parser.add_argument("values", help="comma-separated Python literals, one session each")
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from walle_core.bench.feeds import load_feeds
    from walle_core.bench.runners import make_runner

    module = importlib.import_module(args.module)
    values = [_literal(v) for v in args.values.split(",")]
    feeds = load_feeds(args.model, seed=0)
    original = getattr(module, args.attr)
    runners = []
    try:
        for value in values:
            setattr(module, args.attr, value)
            runner = make_runner("walle")
            runner.check()
            runner.prepare(args.model, feeds, args.threads)
            for _ in range(5):
                runner.run(feeds)
            runners.append(runner)
    finally:
        setattr(module, args.attr, original)
    times: list[list[float]] = [[] for _ in runners]
    for _ in range(args.blocks):
        for k, runner in enumerate(runners):
            for _ in range(args.runs):
                t0 = time.perf_counter()
                runner.run(feeds)
                times[k].append(time.perf_counter() - t0)
    first = statistics.median(times[0])
    for value, ts in zip(values, times, strict=True):
        median = statistics.median(ts)
        print(f"{args.attr}={value!r}: {median * 1e3:.3f} ms  ratio {median / first:.3f}")


def _literal(text: str) -> object:
    """A Python literal, shifts (``1<<62``) included."""
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        tree = ast.parse(text, mode="eval")
        if isinstance(tree.body, ast.BinOp) and isinstance(tree.body.op, ast.LShift):
            return int(ast.literal_eval(tree.body.left)) << int(ast.literal_eval(tree.body.right))
        raise


if __name__ == "__main__":
    main()
