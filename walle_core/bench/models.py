"""Naming benchmark models: a path, ``light:NAME`` (onnx's shipped light models), or a model-set
name built by ``benchmarks/modelset`` (found beside this checkout or via $WALLE_BENCHMARKS_DIR).

The model set lives outside the package because its builders need torch, which walle-core never
depends on; it is loaded here by file location, only when a name asks for it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

LIGHT_MODELS = (
    "bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50",
    "shufflenet", "squeezenet", "vgg19", "zfnet512",
)
_MODULE_NAME = "walle_bench_modelset"


class UnknownModel(LookupError):
    """The name is neither a file, a light model, nor in the model set."""


def light_model_path(name: str) -> Path:
    """Path of ``light_<name>.onnx`` inside the installed onnx package."""
    import onnx

    if name not in LIGHT_MODELS:
        raise UnknownModel(f"no light model {name!r}; known: {', '.join(LIGHT_MODELS)}")
    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"light_{name}.onnx"


def benchmarks_dir() -> Path:
    env = os.environ.get("WALLE_BENCHMARKS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "benchmarks"


def load_modelset() -> ModuleType:
    """Import ``benchmarks/modelset`` by location (it is not an installed package)."""
    if _MODULE_NAME in sys.modules:
        return sys.modules[_MODULE_NAME]
    init = benchmarks_dir() / "modelset" / "__init__.py"
    if not init.exists():
        raise UnknownModel(f"model set not found at {init.parent} (set WALLE_BENCHMARKS_DIR)")
    spec = importlib.util.spec_from_file_location(
        _MODULE_NAME, init, submodule_search_locations=[str(init.parent)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE_NAME] = module
    spec.loader.exec_module(module)
    return module


def all_model_names() -> list[str]:
    """Every name in the model set (light models included), in benchmark order."""
    return list(load_modelset().names())


def resolve(model: str) -> tuple[str, Path]:
    """(label, onnx path) for a path or a name; model-set models are built on first use."""
    path = Path(model)
    if path.suffix == ".onnx" or path.exists():
        if not path.exists():
            raise UnknownModel(f"no such file: {model}")
        return path.stem, path.resolve()
    if model.startswith("light:"):
        return model, light_model_path(model.split(":", 1)[1])
    modelset = load_modelset()
    if model not in modelset.names():
        raise UnknownModel(f"unknown model {model!r}; known: {', '.join(modelset.names())}")
    return model, Path(modelset.build(model))


def floor_model(cache_dir: Path) -> Path:
    """The floor model (built once into ``cache_dir/floor/``): one 3x3 Conv of 8 channels on a
    16x16 plane, Relu, GlobalAveragePool. Its weights and activations are a few KB, so a
    runner's peak memory on it is what the engine itself costs a process (runtime start-up,
    JIT-compiled or loaded kernel code, thread pools): the ``floor MB`` of the bench tables.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    path = cache_dir / "floor" / "model.onnx"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 8, 3, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("GlobalAveragePool", ["r"], ["y"])],
        "walle_floor",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 1, 1])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)  # atomic: a concurrent bench never reads half a file
    return path
