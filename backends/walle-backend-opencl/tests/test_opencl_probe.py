"""The OpenCL backend's probe finds real platforms and runs a kernel on each device.

Skips when no OpenCL platform is installed, unless ``WALLE_REQUIRE_OPENCL=1`` (the project's test
command sets it after installing PoCL, so CI fails instead of skipping silently).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from walle_backend_opencl import NO_PLATFORM_HINT, OpenCLBackend


@pytest.fixture(scope="module")
def availability():  # type: ignore[no-untyped-def]
    found = OpenCLBackend.probe()
    if not found.ok and os.environ.get("WALLE_REQUIRE_OPENCL") != "1":
        pytest.skip(f"no usable OpenCL runtime here: {found.reason}")
    return found


def test_probe_runs_a_kernel_on_every_device(availability) -> None:  # type: ignore[no-untyped-def]
    assert availability.ok, availability.reason
    assert availability.devices
    for device in availability.devices:
        assert device.details["smoke"] == "pass"
        assert device.details["compute_units"] >= 1


def test_cli_lists_platform_and_devices(availability) -> None:  # type: ignore[no-untyped-def]
    walle = Path(sys.executable).parent / "walle"
    result = subprocess.run([str(walle), "backends", "list", "--probe", "--json"],
                            capture_output=True, text=True, timeout=120)
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["opencl"]["status"] == "available"
    assert rows["opencl"]["devices"][0]["platform"]


def test_no_runtime_is_unavailable_not_error(tmp_path: Path) -> None:
    # Point the ICD loader at an empty vendor folder: pyopencl imports, finds no platform.
    env = dict(os.environ, OCL_ICD_VENDORS=str(tmp_path), OPENCL_VENDOR_PATH=str(tmp_path))
    code = ("from walle_backend_opencl import OpenCLBackend\n"
            "a = OpenCLBackend.probe()\nprint(a.ok, '|', a.reason)\n")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    ok, reason = result.stdout.strip().split(" | ", 1)
    assert ok == "False"
    assert reason == NO_PLATFORM_HINT
