"""Run the whole benchmark model set and print per-model figures plus geometric means.

Same as ``walle bench --all``; kept as a script so CI and the README can call it without the
console entry point. Extra arguments go to ``walle bench`` (see ``walle bench --help``):

    .venv/bin/python benchmarks/run_all.py --runs 20 --json > results.json
    .venv/bin/python benchmarks/run_all.py --markdown-from results.json   # README tables
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    if argv[:1] == ["--markdown-from"]:
        from walle_core.bench.report import markdown
        from walle_core.bench.results import report_from_json

        data = json.loads(Path(argv[1]).read_text())
        print(markdown([report_from_json(m) for m in data["models"]]))
        return
    from walle_core.cli.app import app

    app(["bench", "--all", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
