"""Run the ONNX backend test suite against a backend and classify every CPU case.

Statuses: ``passed``; ``unsupported`` (the engine said so up front: an
:class:`UnsupportedOpsError`, or a peer's NOT_IMPLEMENTED); ``failed`` (wrong result, or any
other error); ``skipped`` (the suite itself skipped the case). Each case runs under a time
limit so one pathological case cannot stall a run.
"""

from __future__ import annotations

import json
import re
import signal
import time
import unittest
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

PEERS = {"onnxruntime"}
CASE_TIMEOUT_S = 60


@dataclass(frozen=True)
class CaseResult:
    name: str
    category: str
    status: str
    message: str = ""
    seconds: float = 0.0


@dataclass
class ConformanceReport:
    backend: str
    cases: list[CaseResult] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        c = Counter(r.status for r in self.cases)
        return {k: c.get(k, 0) for k in ("passed", "failed", "unsupported", "skipped")}

    @property
    def total(self) -> int:
        return len(self.cases)

    def to_json(self, details: bool = True) -> str:
        data: dict[str, Any] = {"backend": self.backend, "total": self.total, **self.counts}
        if details:
            data["cases"] = [asdict(r) for r in self.cases]
        return json.dumps(data, indent=2)


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Timeout()


def _onnx_backend(name: str) -> Any:
    from walle_core.testing import onnx_adapter

    if name == "onnxruntime":
        return onnx_adapter.OnnxruntimeBackend
    return onnx_adapter.walle_backend(name)


def iter_cases(pattern: str | None = None) -> Iterator[tuple[str, str, Callable[[Any], Any]]]:
    """(category, case name, backend-taking runner) for every CPU case of the suite."""
    from onnx.backend.test.runner import Runner

    from walle_core.testing import onnx_adapter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner = Runner(onnx_adapter.OnnxruntimeBackend)
    regex = re.compile(pattern) if pattern else None
    for category, items in sorted(runner._test_items.items()):
        for name, item in sorted(items.items()):
            if name.endswith("_cpu") and (regex is None or regex.search(name)):
                yield category, name, item.func


def classify(exc: BaseException) -> str:
    from walle_core.ir.errors import UnsupportedOpsError

    if isinstance(exc, UnsupportedOpsError):
        return "unsupported"
    text = str(exc)
    if "NOT_IMPLEMENTED" in text or "Could not find an implementation" in text:
        return "unsupported"
    return "failed"


def run_case(backend_cls: Any, func: Callable[..., Any]) -> tuple[str, str]:
    """Run one suite case with ``backend_cls`` swapped in; (status, message)."""
    closure = _runner_of(func)
    old = closure.backend
    closure.backend = backend_cls
    old_handler = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_TIMEOUT_S)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            func(None)
        return "passed", ""
    except unittest.SkipTest as exc:
        return "skipped", str(exc)[:300]
    except _Timeout:
        return "failed", f"timed out after {CASE_TIMEOUT_S}s"
    except Exception as exc:  # a case's failure is data, never fatal to the run
        return classify(exc), f"{type(exc).__name__}: {str(exc)[:300]}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old_handler)
        closure.backend = old


def _runner_of(func: Callable[..., Any]) -> Any:
    """The ``Runner`` instance a suite case closes over (its ``backend`` is what runs)."""
    from onnx.backend.test.runner import Runner

    seen: set[int] = set()
    stack: list[Any] = [func]
    while stack:
        f = stack.pop()
        if id(f) in seen:
            continue
        seen.add(id(f))
        for cell in getattr(f, "__closure__", None) or ():
            value = cell.cell_contents
            if isinstance(value, Runner):
                return value
            if callable(value):
                stack.append(value)
        wrapped = getattr(f, "__wrapped__", None)
        if wrapped is not None:
            stack.append(wrapped)
    raise RuntimeError("suite case does not reference its runner")


def run_conformance(backend: str = "reference", pattern: str | None = None,
                    progress: Callable[[CaseResult], None] | None = None) -> ConformanceReport:
    """Run every CPU case (optionally only names matching ``pattern``) on ``backend``."""
    backend_cls = _onnx_backend(backend)
    report = ConformanceReport(backend)
    for category, name, func in iter_cases(pattern):
        start = time.perf_counter()
        status, message = run_case(backend_cls, func)
        result = CaseResult(name, category, status, message, time.perf_counter() - start)
        report.cases.append(result)
        if progress is not None:
            progress(result)
    return report


def assert_conformance(backend: str, minimum_passed: int, pattern: str | None = None) -> None:
    """For a backend plugin's tests: at least ``minimum_passed`` suite cases pass."""
    report = run_conformance(backend, pattern)
    passed = report.counts["passed"]
    if passed < minimum_passed:
        failed = [c.name for c in report.cases if c.status == "failed"][:20]
        raise AssertionError(
            f"{backend}: {passed} passed < {minimum_passed} required; first failures: {failed}"
        )
