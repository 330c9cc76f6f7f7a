"""The engine's error types: everything a user can act on derives from :class:`WalleError`.

The frontend fuzz test asserts that nothing else escapes from loading a model, so every layer
translates foreign failures (protobuf, numpy, onnx checker) into one of these with a message
that names the file, node, op or input involved.
"""

from __future__ import annotations

from dataclasses import dataclass


class WalleError(Exception):
    """Base of every error the engine raises on purpose."""


class ModelError(WalleError):
    """The model file is malformed or inconsistent (cannot be parsed, dangling value, ...)."""


@dataclass(frozen=True)
class UnsupportedOp:
    """One node no decomposer or backend kernel can run."""

    node: str
    op_type: str
    domain: str
    opset: int

    def __str__(self) -> str:
        domain = self.domain or "ai.onnx"
        return f"node {self.node!r}: {domain}::{self.op_type} (opset {self.opset})"


class UnsupportedOpsError(WalleError):
    """Raised once with every unsupported node listed, so a user sees the whole gap at once."""

    def __init__(self, ops: list[UnsupportedOp], backend: str = "") -> None:
        self.ops = ops
        where = f" on backend {backend!r}" if backend else ""
        lines = "\n".join(f"  - {op}" for op in ops)
        kinds = sorted({(op.domain or "ai.onnx") + "::" + op.op_type for op in ops})
        super().__init__(
            f"{len(ops)} node(s) use ops not supported{where} ({', '.join(kinds)}):\n{lines}"
        )


class InputError(WalleError):
    """A feed passed to ``Session.run`` does not match the model (name, dtype or shape)."""


class ShapeError(WalleError):
    """Shapes of a node's inputs are inconsistent with its op."""


class ExecutionError(WalleError):
    """A kernel failed while running a planned node."""
