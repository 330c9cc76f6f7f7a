"""Built programs are reused: in memory within a process, from disk by the next process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CODE = """
from walle_backend_opencl.device import runtime
rt = runtime()
source = "__kernel void k(__global float *x) { x[get_global_id(0)] += 1.0f; }"
first = rt.program(source)
assert rt.program(source) is first
print(rt.builds)
"""


def test_second_process_loads_the_binary(opencl, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True,
                           text=True, timeout=120) for _ in range(2)]
    assert [r.stdout.strip() for r in runs] == ["1", "0"], [r.stderr[-500:] for r in runs]
    assert list((tmp_path / "walle" / "opencl").glob("*.bin"))
