"""Result records shared by the worker, the harness and the CLI (plain dataclasses, JSON-able)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """Outcome of one runner on one model."""

    OK = "ok"
    NOT_INSTALLED = "not installed"
    NO_SOURCE = "no torch source"
    FAILED = "failed"


@dataclass
class RunnerResult:
    """One runner's measurement of one model, as taken in its own subprocess."""

    runner: str
    status: Status
    message: str = ""
    version: str = ""
    median_ms: float | None = None
    p90_ms: float | None = None
    runs: int = 0
    load_ms: float | None = None
    peak_mb: float | None = None
    # this runner's peak on the floor model (one small Conv) in the same bench run: what the
    # engine itself costs a process before any real model (runtime start-up, JIT, pools).
    floor_mb: float | None = None
    # walle median / this runner's median, filled by the harness from the same bench run.
    ratio: float | None = None
    # max |this output - reference output| over all outputs; reference named in BenchReport.
    max_diff: float | None = None

    @property
    def model_mb(self) -> float | None:
        """Peak memory above this runner's floor: what this model adds to the engine."""
        if self.peak_mb is None or self.floor_mb is None:
            return None
        return max(self.peak_mb - self.floor_mb, 0.0)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunnerResult:
        fields = dict(data)
        fields["status"] = Status(fields["status"])
        fields.setdefault("floor_mb", None)  # JSON saved before the floor was measured
        return cls(**fields)


@dataclass
class BenchReport:
    """All runners on one model, with the settings they ran under."""

    model: str
    path: str
    threads: int
    warmup: int
    runs: int
    reference: str | None = None
    results: list[RunnerResult] = field(default_factory=list)

    def get(self, runner: str) -> RunnerResult | None:
        for result in self.results:
            if result.runner == runner:
                return result
        return None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["results"] = [r.to_json() for r in self.results]
        return data


def report_from_json(data: dict[str, Any]) -> BenchReport:
    """Inverse of ``BenchReport.to_json`` (for re-rendering saved ``--json`` output)."""
    fields = dict(data)
    fields["results"] = [RunnerResult.from_json(r) for r in data["results"]]
    return BenchReport(**fields)
