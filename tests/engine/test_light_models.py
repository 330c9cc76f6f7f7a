"""The nine real models shipped with onnx match their expected outputs (suite inputs)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from walle_core import Session

from .conftest import LIGHT

MODELS = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
          "shufflenet", "squeezenet", "vgg19", "zfnet512"]


@pytest.mark.parametrize("name", MODELS)
def test_light_model_matches_expected(name: str) -> None:
    session = Session(LIGHT / f"light_{name}.onnx")
    (inp,) = session.inputs
    shape = tuple(int(d) for d in inp.shape or ())
    n = int(np.prod(shape))
    x = (np.arange(n).reshape(shape) / n).astype(np.float32)  # as onnx's runner generates
    (got,) = session.run({inp.name: x}).values()
    want = onnx.numpy_helper.to_array(onnx.load_tensor(str(LIGHT / f"light_{name}_output_0.pb")))
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-7)
