"""Adapters presenting a Walle backend (or onnxruntime, as the peer) as an ONNX test backend.

``onnx.backend.test`` drives ``prepare(model).run(inputs)``; this module maps that onto
``Session`` so the suite runs unchanged, and onto onnxruntime so its count is measured by the
very same runner rather than quoted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep


class WalleRep(BackendRep):
    def __init__(self, session: Any) -> None:
        self.session = session
        self.names = [i.name for i in session.inputs]

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        if isinstance(inputs, np.ndarray | list) and not isinstance(inputs, list):
            inputs = [inputs]
        feeds = {n: x for n, x in zip(self.names, inputs, strict=False) if x is not None}
        result = self.session.run(feeds)
        return tuple(result[o.name] for o in self.session.outputs)


def walle_backend(name: str) -> type[Backend]:
    """An ``onnx.backend.base.Backend`` class running models on Walle backend ``name``."""

    class WalleBackend(Backend):
        @classmethod
        def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> WalleRep:
            from walle_core.runtime.session import Session

            return WalleRep(Session(model, backend=name))

        @classmethod
        def supports_device(cls, device: str) -> bool:
            return device == "CPU"

    WalleBackend.__name__ = f"Walle_{name}"
    return WalleBackend


class OrtRep(BackendRep):
    def __init__(self, session: Any) -> None:
        self.session = session

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        names = [i.name for i in self.session.get_inputs()]
        feeds = {n: x for n, x in zip(names, inputs, strict=False) if x is not None}
        return tuple(self.session.run(None, feeds))


class OnnxruntimeBackend(Backend):
    """onnxruntime's CPU provider, the peer every count is compared with."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> OrtRep:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 4
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        return OrtRep(session)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"
