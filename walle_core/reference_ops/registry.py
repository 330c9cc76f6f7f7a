"""Kernel registry: op families register their kernels here by (domain, op_type).

Kept apart from ``__init__`` so family modules can import ``register`` without an import cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

OpKernel = Callable[[list[np.ndarray | None], dict[str, Any], int], list[Any]]

_KERNELS: dict[tuple[str, str], OpKernel] = {}


def _norm_domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def register(*op_types: str, domain: str = "") -> Callable[[OpKernel], OpKernel]:
    """Decorator: register one kernel under one or more op types of ``domain``."""

    def deco(fn: OpKernel) -> OpKernel:
        for op in op_types:
            _KERNELS[(_norm_domain(domain), op)] = fn
        return fn

    return deco


def lookup(op_type: str, domain: str = "") -> OpKernel | None:
    return _KERNELS.get((_norm_domain(domain), op_type))


def registered() -> set[tuple[str, str]]:
    return set(_KERNELS)
