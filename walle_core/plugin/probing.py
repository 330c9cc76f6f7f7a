"""Status of drivers as a user sees it: available, unavailable (and why), error, or unprobed.

A plain listing runs each driver's ``quick_check`` (imports nothing heavy). ``probe=True`` runs each
driver's real smoke operation, all of them at once in threads with a time limit, so one slow or
hanging runtime cannot stall the listing, and an exception becomes an ``error`` row.
"""

from __future__ import annotations

import concurrent.futures
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from walle_core.backend import Availability, missing_modules
from walle_core.plugin.discovery import DriverInfo, load_drivers

PROBE_TIMEOUT_S = 60.0


@dataclass
class DriverStatus:
    """One row of ``walle backends list`` (and of the sources/policies lists)."""

    name: str
    distribution: str
    version: str
    api_version: int | None
    status: str  # available | unavailable | error | unprobed
    reason: str = ""
    description: str = ""
    devices: list[dict[str, Any]] = field(default_factory=list)
    probe_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _row(info: DriverInfo, status: str, reason: str) -> DriverStatus:
    return DriverStatus(
        name=info.name,
        distribution=info.distribution,
        version=info.version,
        api_version=info.api_version,
        status=status,
        reason=reason,
        description=info.description,
    )


def _quick(info: DriverInfo) -> DriverStatus:
    check = getattr(info.obj, "quick_check", None)
    try:
        if callable(check):
            found = check()
        else:  # drivers that do not derive from Backend may still declare what they need
            missing = missing_modules(tuple(getattr(info.obj, "requires", ()) or ()))
            found = Availability.unavailable(f"{', '.join(missing)} is not installed") \
                if missing else None
    except Exception as error:  # a broken plugin must not break the listing
        return _row(info, "error", f"quick_check raised {type(error).__name__}: {error}")
    if found is not None and not found.ok:
        return _row(info, "unavailable", found.reason)
    return _row(info, "unprobed", "run with --probe for a real smoke test")


def _probe_one(info: DriverInfo) -> DriverStatus:
    quick = _quick(info)
    if quick.status != "unprobed":
        return quick
    probe = getattr(info.obj, "probe", None)
    if not callable(probe):
        return _row(info, "available", "no probe defined")
    start = time.perf_counter()
    found = probe()
    row = _row(info, "available" if found.ok else "unavailable", found.reason)
    row.devices = [device.to_dict() for device in found.devices]
    row.probe_s = round(time.perf_counter() - start, 4)
    return row


def driver_statuses(
    kind: str, probe: bool = False, timeout_s: float = PROBE_TIMEOUT_S
) -> list[DriverStatus]:
    """Status rows for every driver of ``kind``; never raises for a broken driver."""
    infos = load_drivers(kind)
    rows: dict[str, DriverStatus] = {}
    runnable = []
    for info in infos:
        if info.status == "disabled":
            rows[info.name] = _row(info, "unavailable", info.reason)
        elif info.status == "error":
            rows[info.name] = _row(info, "error", info.reason)
        elif probe:
            runnable.append(info)
        else:
            rows[info.name] = _quick(info)
    if runnable:
        rows.update(_probe_all(runnable, timeout_s))
    return [rows[info.name] for info in infos]


def _probe_all(infos: list[DriverInfo], timeout_s: float) -> dict[str, DriverStatus]:
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(infos))
    futures = {info.name: pool.submit(_probe_one, info) for info in infos}
    deadline = time.monotonic() + timeout_s
    rows = {}
    for info in infos:
        future = futures[info.name]
        try:
            rows[info.name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            rows[info.name] = _row(info, "error", f"probe did not finish within {timeout_s:g} s")
        except Exception as error:
            rows[info.name] = _row(info, "error", f"probe raised {type(error).__name__}: {error}")
    pool.shutdown(wait=False, cancel_futures=True)
    return rows
