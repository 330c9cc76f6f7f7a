"""ONNX frontend: ``load_model`` reads a path, bytes or ``ModelProto`` into an IR graph."""

from walle_core.frontend.onnx.loader import load_model

__all__ = ["load_model"]
