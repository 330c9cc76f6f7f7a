"""Driver discovery: in-process plugins, API version bounds, disabling, fail-soft loading."""

from __future__ import annotations

import time
from typing import ClassVar

import pytest

from walle_core.backend import Availability, Backend, Device
from walle_core.plugin import MIN_PLUGIN_API_VERSION, PLUGIN_API_VERSION
from walle_core.plugin.discovery import PluginError, in_process_driver, load_driver
from walle_core.plugin.probing import driver_statuses


class GoodBackend(Backend):
    """A backend that works."""

    name: ClassVar[str] = "good"
    api_version: ClassVar[int] = PLUGIN_API_VERSION

    @classmethod
    def probe(cls) -> Availability:
        return Availability(ok=True, devices=(Device(name="fake0", kind="cpu"),))


class OldBackend(GoodBackend):
    api_version: ClassVar[int] = MIN_PLUGIN_API_VERSION - 1


class FutureBackend(GoodBackend):
    api_version: ClassVar[int] = PLUGIN_API_VERSION + 1


class RaisingBackend(GoodBackend):
    @classmethod
    def probe(cls) -> Availability:
        raise RuntimeError("driver exploded")


class SlowBackend(GoodBackend):
    @classmethod
    def probe(cls) -> Availability:
        time.sleep(3)
        return Availability(ok=True)


class MissingLibraryBackend(GoodBackend):
    requires: ClassVar[tuple[str, ...]] = ("walle_no_such_module_xyz",)


def rows(probe: bool = False, timeout_s: float = 60.0) -> dict[str, object]:
    return {r.name: r for r in driver_statuses("backends", probe=probe, timeout_s=timeout_s)}


def test_in_process_backend_is_listed_and_probed() -> None:
    with in_process_driver("backends", "good", GoodBackend):
        plain = rows()["good"]
        assert plain.status == "unprobed"
        assert plain.api_version == PLUGIN_API_VERSION
        assert plain.description == "A backend that works."
        probed = rows(probe=True)["good"]
        assert probed.status == "available"
        assert probed.devices[0]["name"] == "fake0"
    assert "good" not in rows()


def test_builtin_reference_comes_through_the_entry_point() -> None:
    row = rows()["reference"]
    assert row.distribution == "walle-core"
    assert row.status == "unprobed"


@pytest.mark.parametrize(("cls", "word"), [(OldBackend, "too old"), (FutureBackend, "too new")])
def test_api_version_out_of_bounds_is_an_error(cls: type, word: str) -> None:
    with in_process_driver("backends", "versioned", cls):
        row = rows(probe=True)["versioned"]
    assert row.status == "error"
    assert word in row.reason


def test_probe_that_raises_is_an_error_and_others_still_work() -> None:
    with in_process_driver("backends", "boom", RaisingBackend), \
            in_process_driver("backends", "good", GoodBackend):
        found = rows(probe=True)
    assert found["boom"].status == "error"
    assert "driver exploded" in found["boom"].reason
    assert found["good"].status == "available"


def test_hanging_probe_times_out_without_blocking_the_listing() -> None:
    with in_process_driver("backends", "slow", SlowBackend):
        start = time.perf_counter()
        row = rows(probe=True, timeout_s=0.5)["slow"]
        elapsed = time.perf_counter() - start
    assert row.status == "error" and "within 0.5 s" in row.reason
    assert elapsed < 2.5


def test_missing_library_is_unavailable_not_error() -> None:
    with in_process_driver("backends", "needs", MissingLibraryBackend):
        row = rows()["needs"]
    assert row.status == "unavailable"
    assert "walle_no_such_module_xyz is not installed" in row.reason


def test_disabled_plugins_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WALLE_DISABLED_PLUGINS", "good, other")
    with in_process_driver("backends", "good", GoodBackend):
        row = rows(probe=True)["good"]
        assert row.status == "unavailable"
        assert "WALLE_DISABLED_PLUGINS" in row.reason
        with pytest.raises(PluginError, match="disabled"):
            load_driver("backends", "good")


def test_load_driver_by_name_and_unknown_name() -> None:
    with in_process_driver("backends", "good", GoodBackend):
        assert load_driver("backends", "good") is GoodBackend
    with pytest.raises(PluginError, match="no backend named 'nope'"):
        load_driver("backends", "nope")
