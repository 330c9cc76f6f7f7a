"""``Session``: load → check support → plan per input shapes (cached) → run.

The public face of the engine. Feeds are validated against the model (names, dtypes, ranks,
fixed and symbolic dims) with messages that say what was expected and what came; a new set of
input shapes is planned once and cached; shapes that depend on data are run eagerly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from walle_core.frontend.onnx import load_model
from walle_core.geometry import DataDependent
from walle_core.ir.errors import InputError, UnsupportedOpsError
from walle_core.ir.graph import Dim, Graph, Value
from walle_core.ir.primitives import TensorSpec
from walle_core.runtime.backends import PlanningView, resolve
from walle_core.runtime.executor import Executable
from walle_core.runtime.governor import ThreadGovernor, cores, set_blas_threads
from walle_core.runtime.graph_passes import optimize_graph
from walle_core.runtime.passes import optimize
from walle_core.runtime.planner import Program, plan, unsupported_ops
from walle_core.search import Placement

ShapeKey = tuple[tuple[str, tuple[int, ...], str], ...]


@dataclass(frozen=True)
class TensorInfo:
    """Metadata of a model input or output; dims are ints, symbol names or None."""

    name: str
    dtype: str
    shape: tuple[Dim, ...] | None


class Session:
    """Run a model: ``Session(path_or_bytes_or_graph, backend="auto", threads=None)``.

    ``backend`` names the backends the semi-auto search chooses from for each step: ``"auto"``
    (every installed one that is available), one name (the reference backend then runs only
    what that one cannot), or a comma-separated list. ``threads`` caps each backend's threads.
    """

    def __init__(self, model: str | os.PathLike[str] | bytes | Graph, backend: str = "auto",
                 threads: int | None = None) -> None:
        source = model if isinstance(model, Graph) else load_model(model)
        # the loaded graph's op counts, not the graph: folding (BatchNorm into Conv weights)
        # made new weight arrays, and keeping the source would keep the old ones alive too
        # (DenseNet-121: ~30 MB of a 170 MB peak)
        self.ops_before = dict(source.op_histogram().most_common())
        self.graph, self.graph_stats = optimize_graph(source)
        del source
        self.backends, self.fallback, self.notes = resolve(backend, threads)
        self.backend = self.backends[0]
        self._view = PlanningView(self.backends + self.fallback)
        self._last: tuple[Any, Any] = (None, None)  # feed signature -> its Executable
        self.governor = ThreadGovernor(max(b.threads or cores() for b in self.backends +
                                           self.fallback), apply=self._limit_threads)
        missing = unsupported_ops(self.graph, self._view)
        if missing:
            raise UnsupportedOpsError(missing, backend)
        self._inputs = {v.name: v for v in self.graph.real_inputs()}
        self._plans: dict[ShapeKey, Executable | None] = {}
        static = self._static_specs()
        if static is not None:
            self._prepare(static)

    def _limit_threads(self, n: int) -> None:
        set_blas_threads(n)
        for b in self.backends + self.fallback:
            b.limit_threads(n)

    @property
    def inputs(self) -> list[TensorInfo]:
        return [_info(v) for v in self._inputs.values()]

    @property
    def outputs(self) -> list[TensorInfo]:
        return [_info(v) for v in self.graph.outputs]

    def _static_specs(self) -> dict[str, TensorSpec] | None:
        specs = {}
        for v in self._inputs.values():
            if v.type is None or not v.type.is_static:
                return None
            specs[v.name] = TensorSpec(tuple(d for d in v.type.shape or () if isinstance(d, int)),
                                       v.type.dtype)
        return specs

    def _prepare(self, specs: dict[str, TensorSpec]) -> Executable | None:
        key = _key(specs)
        if key not in self._plans:
            try:
                program = plan(self.graph, self._view, specs)
            except DataDependent:
                self._plans[key] = None
            else:
                optimize(program, self._view.fused_activations(), host_only=all(
                    b.memory_domain == "host" for b in self._view.backends),
                    kernel_adds=self._view.fused_adds(),
                    channels_last=self._view.channels_last_ops() if
                    os.environ.get("WALLE_LAYOUT", "").lower() != "nchw" else None,
                    retire=self._retire)
                self._plans[key] = Executable(program, self._search(program))
        return self._plans[key]

    def _retire(self, old: Any, view: Any) -> None:
        """The channels-last pass made ``view`` (same values, a view of its HWIO copy) to
        replace the weight array ``old``: hold that instead, so ``old`` is freed."""
        for value in self.graph.initializers:
            if value.const is old:
                value.const = view

    def _search(self, program: Program) -> Placement:
        from walle_core.search import search
        from walle_core.search.measure import Measurements, shared
        from walle_core.search.profile import get_profile

        everyone = self.backends + self.fallback
        profiles = {b.name: get_profile(b) for b in everyone}
        placement = search(program.steps, program.slots, list(program.inputs.values()),
                           [s for _, s in program.outputs], program.builder.consts,
                           program.aliases, self.backends, profiles, self.fallback,
                           shared() if Measurements.enabled() else None)
        # new steps' kernels compiled in a child, only loaded here (search/measure.py)
        shared().warm(program.steps, program.slots, placement.backends, placement.algorithms,
                      program.builder.consts)
        return placement

    def plan_for(self, specs: dict[str, TensorSpec]) -> Program | None:
        """The planned program for these input specs (None when planned eagerly)."""
        exe = self._prepare(specs)
        return exe.program if exe is not None else None

    def executable(self, specs: dict[str, TensorSpec]) -> Executable | None:
        return self._prepare(specs)

    def run(self, feeds: dict[str, Any], output_names: list[str] | None = None
            ) -> dict[str, np.ndarray]:
        """Run the model; returns every output (or ``output_names``) by name."""
        try:  # the same names, shapes and dtypes as last time: validated and planned already
            sig = tuple((n, a.shape, a.dtype) for n, a in feeds.items())
        except AttributeError:
            sig = None
        if sig is not None and sig == self._last[0]:
            exe = self._last[1]
            self.governor.tick()
            return _select(exe.run(feeds), output_names)
        arrays = self._validate(feeds)
        if not all(isinstance(a, np.ndarray) for a in arrays.values()):
            return self._run_eager({}, arrays, output_names)  # sequences: values, not buffers
        specs = {n: TensorSpec(tuple(a.shape), self._inputs[n].type.dtype  # type: ignore[union-attr]
                               if self._inputs[n].type is not None else _dtype(a))
                 for n, a in arrays.items()}
        exe = self._prepare(specs)
        if exe is None:
            return self._run_eager(specs, arrays, output_names)
        if sig is not None:
            self._last = (sig, exe)
        self.governor.tick()
        return _select(exe.run(arrays), output_names)

    def _run_eager(self, specs: dict[str, TensorSpec], arrays: dict[str, Any],
                   output_names: list[str] | None) -> dict[str, Any]:
        for name in arrays:
            declared = self._inputs[name].type
            specs.setdefault(name, TensorSpec((), declared.dtype if declared else
                                              _dtype(np.zeros(0))))
        program = plan(self.graph, self._view, specs, arrays)
        consts = program.builder.consts
        return _select({n: consts[s] for n, s in program.outputs}, output_names)


    def _validate(self, feeds: dict[str, Any]) -> dict[str, Any]:
        expected = list(self._inputs)
        unknown = [n for n in feeds if n not in self._inputs]
        if unknown:
            raise InputError(f"unknown input name(s) {unknown}; the model's inputs are {expected}")
        missing = [n for n in expected if n not in feeds and self._inputs[n].const is None]
        if missing:
            raise InputError(f"missing input(s) {missing}; the model's inputs are {expected}")
        symbols: dict[str, tuple[int, str]] = {}
        arrays = {}
        for name, feed in feeds.items():
            array = feed if isinstance(feed, np.ndarray | list) else np.asarray(feed)
            value = self._inputs[name]
            if value.type is not None and isinstance(array, np.ndarray):
                _check(name, array, value, symbols)
            arrays[name] = array
        return arrays


def _dtype(a: np.ndarray) -> Any:
    from walle_core.ir import dtypes

    return dtypes.from_numpy(a.dtype)


def _check(name: str, array: np.ndarray, value: Value, symbols: dict[str, tuple[int, str]]
           ) -> None:
    t = value.type
    assert t is not None
    want = t.dtype.np if t.dtype.name != "string" else np.dtype(object)
    if array.dtype != want and not (t.dtype.name == "string" and array.dtype.kind in "OUS"):
        raise InputError(f"input {name!r}: expected dtype {t.dtype}, got {array.dtype}")
    if t.shape is None:
        return
    shape_str = "[" + ",".join("?" if d is None else str(d) for d in t.shape) + "]"
    if array.ndim != len(t.shape):
        raise InputError(f"input {name!r}: expected shape {shape_str} (rank {len(t.shape)}), "
                         f"got {list(array.shape)} (rank {array.ndim})")
    for axis, (dim, got) in enumerate(zip(t.shape, array.shape, strict=True)):
        if isinstance(dim, int) and dim != got:
            raise InputError(f"input {name!r}: expected shape {shape_str}, got "
                             f"{list(array.shape)} (axis {axis} must be {dim})")
        if isinstance(dim, str):
            seen = symbols.setdefault(dim, (got, name))
            if seen[0] != got:
                raise InputError(f"input {name!r}: dim {dim!r} is {got} but {seen[1]!r} has "
                                 f"{dim}={seen[0]}")


def _key(specs: dict[str, TensorSpec]) -> ShapeKey:
    return tuple(sorted((n, s.shape, s.dtype.name) for n, s in specs.items()))


def _info(v: Value) -> TensorInfo:
    if v.type is None:
        return TensorInfo(v.name, "unknown", None)
    return TensorInfo(v.name, v.type.dtype.name, v.type.shape)


def _select(result: dict[str, Any], output_names: list[str] | None) -> dict[str, Any]:
    if output_names is None:
        return result
    unknown = [n for n in output_names if n not in result]
    if unknown:
        raise InputError(f"unknown output(s) {unknown}; outputs are {list(result)}")
    return {n: result[n] for n in output_names}
