"""Run the whole benchmark model set and print per-model figures plus geometric means.

Same as ``walle bench --all``; kept as a script so CI and README can call it without the console
entry point. Example: ``.venv/bin/python benchmarks/run_all.py --runs 10 --json > results.json``.
Extra arguments are passed to ``walle bench`` (see ``walle bench --help``).
"""

from __future__ import annotations

import sys

from walle_core.cli.app import app

if __name__ == "__main__":
    app(["bench", "--all", *sys.argv[1:]])
