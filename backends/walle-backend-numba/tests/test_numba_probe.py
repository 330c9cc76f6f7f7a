"""The numba backend's probe really JIT-compiles and runs a kernel."""

from __future__ import annotations

from walle_backend_numba import NumbaBackend

from walle_core.plugin.probing import driver_statuses


def test_probe_runs_a_kernel_and_reports_the_cpu() -> None:
    found = NumbaBackend.probe()
    assert found.ok, found.reason
    (device,) = found.devices
    assert device.kind == "cpu"
    assert device.details["cores"] >= 1
    assert device.platform.startswith("numba ")


def test_registered_through_the_entry_point() -> None:
    rows = {row.name: row for row in driver_statuses("backends", probe=True)}
    assert rows["numba"].distribution == "walle-backend-numba"
    assert rows["numba"].status == "available"
