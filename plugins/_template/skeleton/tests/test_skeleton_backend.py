"""The skeleton backend is discoverable and its probe passes."""

from walle_core.plugin.probing import driver_statuses


def test_skeleton_backend_is_listed_and_available() -> None:
    rows = {row.name: row for row in driver_statuses("backends", probe=True)}
    assert rows["skeleton"].status == "available", rows["skeleton"].reason
    assert rows["skeleton"].devices
