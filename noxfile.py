"""Sessions of the project's one runner: ``nox -s lint typecheck tests``.

``scripts/test`` runs them with ``--no-venv`` inside the .venv that scripts/bootstrap prepared
(every distribution installed editable), so a session costs no extra install.
"""

from __future__ import annotations

import sys

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.error_on_missing_interpreters = True

PY = sys.executable


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole repository."""
    session.run(PY, "-m", "ruff", "check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy on the core (walle_core)."""
    session.run(PY, "-m", "mypy", "walle_core")


@nox.session
def tests(session: nox.Session) -> None:
    """pytest over the core and every distribution's tests (GPU tests skip without a GPU)."""
    session.run(PY, "-m", "pytest", "-m", "not gpu", "--durations=10", *session.posargs)


@nox.session
def quick(session: nox.Session) -> None:
    """The fast subset: no slow, no GPU tests."""
    session.run(PY, "-m", "pytest", "-m", "not slow and not gpu", "-q", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """The benchmark model set against onnxruntime, MNN and PyTorch (prints ratios)."""
    session.run("walle", "bench", "--all", "--vs", "onnxruntime,mnn,torch", *session.posargs,
                external=True)


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: probe every installed backend."""
    session.run("walle", "backends", "list", "--probe", external=True)
