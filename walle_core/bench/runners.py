"""The runners: one small class per engine, all behind the same ``Runner`` protocol.

Each runner lives in its own benchmark subprocess, so its library import, threads and memory
never touch another's. ``check()`` imports the library (``RunnerUnavailable`` if it is missing),
``convert()`` does offline work that must not count as model memory (MNN's converter),
``prepare()`` loads the model, ``run()`` is the timed call.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Protocol

from walle_core.bench.results import Status

SIDECAR = "walle_bench.json"  # written by benchmarks/modelset beside each model it builds


class RunnerUnavailable(Exception):
    """The runner cannot measure this model; ``status`` says why (not installed, no source)."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status


class Runner(Protocol):
    name: str

    def check(self) -> str:
        """Import the engine; return its version or raise ``RunnerUnavailable``."""
        ...

    def convert(self, model_path: Path, cache_dir: Path) -> None:
        """Offline preparation done before memory is measured (most runners: nothing)."""
        ...

    def prepare(self, model_path: Path, feeds: dict[str, Any], threads: int) -> None: ...

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]: ...


def _missing(package: str, exc: Exception) -> RunnerUnavailable:
    return RunnerUnavailable(Status.NOT_INSTALLED, f"{package} not installed ({exc})")


class WalleRunner:
    """Walle's own engine through the public ``walle_core.Session`` API."""

    name = "walle"

    def __init__(self, backend: str = "auto") -> None:
        self.backend = backend
        self.session: Any = None

    def check(self) -> str:
        # Not "not installed": if the engine does not import, that is a Walle failure.
        from walle_core import __version__
        from walle_core.runtime.backends import resolve
        from walle_core.runtime.session import Session  # noqa: F401

        # import the engine here, as the other runners import their library in check(): the
        # backend plugins this run resolves to (numba and its LLVM, ~55 MB) and every module
        # of theirs and of the core a session imports on first use (kernel definitions,
        # reference ops, layout pass: ~5 MB), so the worker's peak memory excludes library
        # code for every runner alike. Kernels are still loaded (and counted) when the
        # session first runs, and so is numba's runtime.
        candidates, fallback, _ = resolve(self.backend)
        _import_engine([*candidates, *fallback])
        return f"{__version__} ({self.backend})"

    def convert(self, model_path: Path, cache_dir: Path) -> None:
        return None

    def prepare(self, model_path: Path, feeds: dict[str, Any], threads: int) -> None:
        from walle_core.runtime.session import Session

        self.session = Session(str(model_path), backend=self.backend, threads=threads)

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        return dict(self.session.run(feeds))


#: core modules a session imports on first use
ENGINE_MODULES = ("walle_core.reference_ops", "walle_core.frontend.onnx.infer",
                  "walle_core.runtime.layout")


def _import_engine(backends: list[Any]) -> None:
    """Import ``ENGINE_MODULES`` and every submodule of each backend's package."""
    import importlib
    import pkgutil

    for name in ENGINE_MODULES:
        importlib.import_module(name)
    for backend in backends:
        package = sys.modules.get(type(backend).__module__.split(".")[0])
        for info in pkgutil.walk_packages(getattr(package, "__path__", []),
                                          f"{getattr(package, '__name__', '')}."):
            if info.name.split(".")[0] != "walle_core":
                importlib.import_module(info.name)


class OnnxRuntimeRunner:
    """onnxruntime CPU provider, ``threads`` intra-op, one inter-op thread, sequential."""

    name = "onnxruntime"

    def __init__(self) -> None:
        self.session: Any = None

    def check(self) -> str:
        try:
            import onnxruntime
        except ImportError as exc:
            raise _missing("onnxruntime", exc) from exc
        return str(onnxruntime.__version__)

    def convert(self, model_path: Path, cache_dir: Path) -> None:
        return None

    def prepare(self, model_path: Path, feeds: dict[str, Any], threads: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(
            str(model_path), opts, providers=["CPUExecutionProvider"]
        )

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, feeds), strict=True))


def mnn_cache_path(model_path: Path, cache_dir: Path) -> Path:
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()[:16]
    # model-zoo layout (<name>/model.onnx): name the cache entry after the directory
    stem = model_path.parent.name if model_path.stem == "model" else model_path.stem
    return cache_dir / "mnn" / f"{stem}-{digest}.mnn"


class MnnRunner:
    """MNN's PyPI wheel: its converter (ONNX -> .mnn, cached), then the Module API on CPU.

    The converter is called through the wheel's ``_tools`` extension in a child process, not
    through ``mnnconvert``/``MNN.tools.mnnconvert``: those wrappers try to ``pip install`` a
    telemetry SDK and post usage logs, which a benchmark must not do.
    """

    name = "mnn"

    def __init__(self) -> None:
        self.module: Any = None
        self.mnn_path: Path | None = None
        self.inputs: list[str] = []
        self.outputs: list[str] = []

    def check(self) -> str:
        try:
            import MNN
        except ImportError as exc:
            raise _missing("MNN", exc) from exc
        return str(MNN.version()) if hasattr(MNN, "version") else "unknown"

    def convert(self, model_path: Path, cache_dir: Path) -> None:
        target = mnn_cache_path(model_path, cache_dir)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_suffix(".partial")
            argv = ["mnnconvert", "-f", "ONNX", "--modelFile", str(model_path),
                    "--MNNModel", str(partial), "--bizCode", "walle"]
            code = f"import _tools; _tools.mnnconvert({argv!r})"
            proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            if proc.returncode != 0 or not partial.exists():
                tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
                raise RuntimeError("MNN converter failed: " + " | ".join(tail))
            partial.rename(target)
        self.mnn_path = target

    def prepare(self, model_path: Path, feeds: dict[str, Any], threads: int) -> None:
        import MNN.nn as nn

        from walle_core.bench.feeds import graph_outputs

        assert self.mnn_path is not None, "convert() runs before prepare()"
        self.inputs = list(feeds)
        self.outputs = graph_outputs(model_path)
        self.module = nn.load_module_from_file(
            str(self.mnn_path), self.inputs, self.outputs, thread_num=threads
        )

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        import MNN.expr as F
        import numpy as np

        args = []
        for name in self.inputs:
            arr = feeds[name]
            if arr.dtype.kind in "iub":  # MNN computes integers as int32
                args.append(F.const(arr.astype(np.int32), list(arr.shape), F.NCHW, F.int))
            else:
                args.append(F.const(arr.astype(np.float32), list(arr.shape), F.NCHW))
        outs = self.module.forward(args)
        result = {}
        for name, var in zip(self.outputs, outs, strict=True):
            if var.data_format == F.NC4HW4:
                var = F.convert(var, F.NCHW)
            result[name] = np.array(var.read())
        return result


class TorchRunner:
    """PyTorch eager on CPU, running the nn.Module the benchmark model was exported from."""

    name = "torch"

    def __init__(self) -> None:
        self.module: Any = None
        self.inputs: list[str] = []
        self.outputs: list[str] = []

    def check(self) -> str:
        try:
            import torch
        except ImportError as exc:
            raise _missing("torch", exc) from exc
        return str(torch.__version__)

    def applies_to(self, model_path: Path) -> None:
        """Called before ``check()``: an ONNX-only model need not pay for importing torch."""
        if not (model_path.parent / SIDECAR).exists():
            raise RunnerUnavailable(Status.NO_SOURCE, "no torch source (ONNX-only model)")

    def convert(self, model_path: Path, cache_dir: Path) -> None:
        return None

    def prepare(self, model_path: Path, feeds: dict[str, Any], threads: int) -> None:
        import torch

        from walle_core.bench.models import load_modelset

        meta = json.loads((model_path.parent / SIDECAR).read_text())
        torch.set_num_threads(threads)
        self.module = load_modelset().torch_module(meta["name"], seed=meta["seed"]).eval()
        self.inputs = meta["inputs"]
        self.outputs = meta["outputs"]

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        import torch

        with torch.inference_mode():
            out = self.module(*[torch.from_numpy(feeds[n]) for n in self.inputs])
        outs = out if isinstance(out, tuple | list) else (out,)
        return {n: t.numpy() for n, t in zip(self.outputs, outs, strict=True)}


PEERS = ("onnxruntime", "mnn", "torch")


def make_runner(name: str, backend: str = "auto") -> Runner:
    """The runner called ``name`` (``walle`` or a peer)."""
    if name == "walle":
        return WalleRunner(backend)
    factories: dict[str, type[Runner]] = {
        "onnxruntime": OnnxRuntimeRunner,
        "ort": OnnxRuntimeRunner,
        "mnn": MnnRunner,
        "torch": TorchRunner,
        "pytorch": TorchRunner,
    }
    if name not in factories:
        raise ValueError(f"unknown runner {name!r}; known: walle, {', '.join(PEERS)}")
    return factories[name]()


def thread_env(threads: int) -> dict[str, str]:
    """Environment for a runner subprocess: every BLAS/OpenMP pool pinned to ``threads``."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
        env[var] = str(threads)
    return env
