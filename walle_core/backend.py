"""The backend contract every compute backend implements, built-in or plugin.

A backend is a class registered under the ``walle.backends`` entry-point namespace. Importing the
module that defines it must stay cheap: heavy libraries (numba, pyopencl, vulkan, ...) are
imported inside :meth:`Backend.probe` and the execution methods, never at module level, so that
``walle backends list`` answers without loading them.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from walle_core.ir.primitives import PRIMITIVE_KINDS, Primitive, Step, TensorSpec

if TYPE_CHECKING:
    import numpy as np

    from walle_core.search.profile import CostProfile


@dataclass(frozen=True)
class Device:
    """One device a backend can run on (a CPU, an OpenCL device, a GPU...)."""

    name: str
    kind: str  # "cpu", "gpu", "accelerator", "simulator", ...
    platform: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Availability:
    """The answer of a probe: can this backend run here, and on what."""

    ok: bool
    reason: str = ""
    devices: tuple[Device, ...] = ()

    @classmethod
    def unavailable(cls, reason: str) -> Availability:
        return cls(ok=False, reason=reason)


_STAMPS: dict[type, str] = {}


def code_stamp(cls: type) -> str:
    """Version and newest source mtime of the package defining ``cls``: a changed backend
    invalidates what was measured with the old code."""
    if cls in _STAMPS:  # once per process: listing and statting the package per plan is waste
        return _STAMPS[cls]
    import os
    import sys

    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    if not path:
        return "?"
    folder = os.path.dirname(path)
    try:
        newest = max(os.stat(os.path.join(folder, f)).st_mtime_ns
                     for f in os.listdir(folder) if f.endswith(".py"))
    except (OSError, ValueError):
        newest = 0
    version = getattr(sys.modules.get(cls.__module__.split(".")[0]), "__version__", "")
    _STAMPS[cls] = f"{version}@{newest}"
    return _STAMPS[cls]


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    """Names in ``modules`` that cannot be imported, found without importing them."""
    missing = []
    for module in modules:
        try:
            if importlib.util.find_spec(module) is None:
                missing.append(module)
        except (ImportError, ValueError):
            missing.append(module)
    return missing


class Backend:
    """Base class of compute backends.

    Subclasses set ``name`` (the entry-point id), ``api_version`` (the ``PLUGIN_API_VERSION`` they
    were written against) and ``requires`` (import names of the heavy libraries they need), and
    override :meth:`probe` with a real smoke operation.
    """

    name: ClassVar[str] = ""
    api_version: ClassVar[int] = 0
    requires: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def quick_check(cls) -> Availability | None:
        """A check that imports nothing: ``None`` when nothing is known to be missing."""
        missing = missing_modules(cls.requires)
        if missing:
            return Availability.unavailable(f"{', '.join(missing)} is not installed")
        return None

    @classmethod
    def probe(cls) -> Availability:
        """Run a real smoke operation and list the devices. Must not raise for a missing runtime:
        return ``Availability.unavailable(reason)``; raising is reported as an error."""
        raise NotImplementedError


# --------------------------------------------------------------------------------------------
# Execution contract. A session plans a primitive program (walle_core.ir.primitives), lays its
# tensors out in one arena per backend, then calls, per step, the callable ``compile`` returned.
# Buffers are opaque to the core: whatever ``allocate``/``view``/``constant`` return is handed
# back to the same backend's kernels, ``upload`` and ``download``.
# --------------------------------------------------------------------------------------------

CompiledStep = Callable[[Sequence[Any], Sequence[Any]], None]
"""``fn(inputs, outputs)`` runs the step on those buffers. A plan passes the same buffers on
every run, so a compiled step may also carry ``fn.bind(inputs, outputs)``, returning a
callable of no arguments that runs the step on those very buffers with everything it can
derive from them resolved once (views, addresses, kernel arguments): the executor then calls
that on each run. One Python frame and a memo check less per step is a tenth of a small
model's run (DIN: 34 steps in 60 us). A bound call that fails raises what it raises; the
executor names the step (:class:`~walle_core.ir.errors.ExecutionError`)."""


StepTimer = Callable[
    [Primitive, "Sequence[TensorSpec | None]", "Sequence[TensorSpec]", "Algorithm | None"], float]


@dataclass(frozen=True)
class Algorithm:
    """One way a backend can run one step, as offered to the semi-auto search.

    ``cost`` is the estimated seconds per run (from the backend's calibrated
    :class:`~walle_core.search.profile.CostProfile`, or measured where that is cheap);
    ``params`` are what :meth:`ExecutionBackend.compile` needs to build that variant (tile
    sizes, local work sizes, ...), as sorted ``(name, value)`` pairs so the choice is hashable.
    ``extra_bytes`` is memory the variant holds for as long as the session lives, beyond its
    operands (Winograd's transformed weights, say): the search charges it against ``cost``
    (``walle_core.search.memory_price``).
    """

    name: str
    cost: float
    params: tuple[tuple[str, Any], ...] = ()
    note: str = ""  # why this cost, for ``walle model explain``
    extra_bytes: int = 0

    def param(self, key: str, default: Any = None) -> Any:
        for k, v in self.params:
            if k == key:
                return v
        return default


class ExecutionBackend(Backend):
    """A backend that executes primitive programs (what a session needs beyond ``probe``).

    Lifecycle: ``backend = cls(threads=...)``; per plan ``arena = allocate(nbytes)``, buffers via
    ``view(arena, offset, spec)`` and ``constant(array)``; per step ``fn = compile(step, ins,
    outs)`` then ``fn(in_buffers, out_buffers)`` (absent inputs are ``None``); ``upload`` /
    ``download`` move data between numpy and buffers; ``sync`` waits for queued work.

    Placement: the semi-auto search (:mod:`walle_core.search`) asks every candidate backend for
    :meth:`algorithms` of each step, each with an estimated cost, and chooses per graph; the
    chosen :class:`Algorithm` comes back through ``compile(..., algorithm=)``. Backends whose
    buffers are not numpy arrays in host memory declare their own :attr:`memory_domain`; the
    core then inserts transfers (``download`` from one, ``upload`` to the other) where a tensor
    crosses domains, and the search charges for them.
    """

    #: Backends with the same memory domain share buffers without copies. "host" buffers are
    #: numpy arrays; a device backend names its own (e.g. "opencl:0").
    memory_domain: str = "host"
    #: True where compiling a step builds machine code in this process and keeps it in an
    #: on-disk cache (numba's JIT): a session then has its new steps run once in a child
    #: process first (``walle_core.search.measure.Measurements.warm``), so what it compiles
    #: (tens of MB of compiler memory that stays) is compiled there and only loaded here.
    jit_cache: bool = False

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def supports(self, primitive: Primitive) -> bool:
        """Whether :meth:`compile` accepts this primitive (with these parameters).

        A composite :class:`Kernel` step is accepted when its op is in :meth:`native_ops`.
        """
        if primitive.kind == "Kernel":
            key = (primitive.domain, primitive.op_type)  # type: ignore[attr-defined]
            return key in self.native_ops()
        return primitive.kind in PRIMITIVE_KINDS

    def native_ops(self) -> set[tuple[str, str]]:
        """Composite ``(domain, op_type)`` this backend runs as one :class:`Kernel` step."""
        return set()

    def prefers_native(self, domain: str, op_type: str) -> bool:
        """True to run a composite op natively even when geometry can decompose it."""
        return False

    def fused_activations(self) -> set[tuple[str, str]]:
        """Native ops whose :class:`Kernel` step applies a fused activation: the core's
        epilogue fusion may set ``attrs["fused_activation"]`` ("relu" / "clip" / "sigmoid" /
        "tanh") and ``attrs["fused_act_params"]`` (clip's (min, max)) on such a step, applied
        to its first output after the op. Fusion happens only where every candidate backend
        that runs the op natively lists it here."""
        return set()

    def channels_last_ops(self) -> set[tuple[str, str]]:
        """Native ops this backend also runs channels-last: a :class:`Kernel` step with
        ``attrs["layout"] == "NHWC"`` whose activations (input, fused residual, output) are
        ``[N, H, W, C]`` and whose Conv weights are ``[KH, KW, C/G, M]``. The core's
        ``channels_last`` pass (``walle_core/runtime/layout.py``) converts chains of Convs
        only when every backend running Conv natively declares it here."""
        return set()

    def fused_adds(self) -> set[tuple[str, str]]:
        """Native ops whose :class:`Kernel` step adds a fused residual: the core may set
        ``attrs["fused_add"] = True`` and append one input (a tensor of the first output's
        shape and dtype; optional inputs before it are -1); the step then computes
        ``act(op(...) + residual)``, the residual added before any fused activation (a ResNet
        block's ``Relu(Add(Conv(x), shortcut))``). Same all-runners rule as
        :meth:`fused_activations`."""
        return set()

    def prefers_native_for(self, domain: str, op_type: str,
                           inputs: Sequence[TensorSpec | None]) -> bool:
        """:meth:`prefers_native` for these input specs (asked at plan time, shapes known):
        say False where the native kernel would decline (e.g. float16), so geometry
        decomposes the op into primitives this backend can still run."""
        return self.prefers_native(domain, op_type)

    def allocate(self, nbytes: int) -> Any:
        raise NotImplementedError

    def view(self, arena: Any, offset: int, spec: TensorSpec) -> Any:
        raise NotImplementedError

    def constant(self, array: np.ndarray) -> Any:
        raise NotImplementedError

    def upload(self, array: np.ndarray, buffer: Any) -> None:
        raise NotImplementedError

    def download(self, buffer: Any) -> np.ndarray:
        raise NotImplementedError

    def compile(
        self, step: Step, inputs: Sequence[TensorSpec | None], outputs: Sequence[TensorSpec],
        algorithm: Algorithm | None = None,
    ) -> CompiledStep:
        """Build the callable for ``step``; ``algorithm`` is one this backend offered in
        :meth:`algorithms` (None: the backend's own default)."""
        raise NotImplementedError

    def algorithms(
        self, step: Step, inputs: Sequence[TensorSpec | None], outputs: Sequence[TensorSpec],
        profile: CostProfile,
    ) -> list[Algorithm]:
        """The ways this backend can run ``step``, each with its estimated cost in seconds.

        The default is one algorithm costed by the core's analytic model (FLOPs and bytes over
        the rates measured for this backend on this machine). Override to offer variants
        (Winograd vs im2col, tile or work-group sizes) with their own estimates.
        """
        return [Algorithm("default", profile.estimate(step, inputs, outputs))]

    @classmethod
    def auto_candidate(cls) -> bool:
        """Whether ``Session(backend="auto")`` searches over this backend. A device backend
        whose only device is the host CPU (e.g. OpenCL on PoCL) may say False: the host
        backends already use those cores without transfers. Naming it explicitly still
        works (``backend="opencl"`` or ``"opencl,numba"``)."""
        return True

    def calibrate_extra(self, time_step: StepTimer) -> dict[str, float]:
        """Backend-specific micro-benchmarks, run once per machine with the core's calibration.

        ``time_step(primitive, input_specs, output_specs, algorithm)`` compiles one step with
        that algorithm, runs it on random data and returns its median seconds. What this
        returns is stored in ``CostProfile.extra`` (cached with the profile) for
        :meth:`algorithms` to read, e.g. the measured speed of Winograd against im2col.
        """
        return {}

    def calibration_key(self) -> str:
        """Identifies this backend's device and settings in the per-machine calibration cache;
        a different key means the rates are measured again."""
        from walle_core.hostinfo import cpu_model

        return f"{self.name}|{code_stamp(type(self))}|{cpu_model()}|threads={self.threads}"

    def limit_threads(self, n: int) -> None:
        """Use at most ``n`` host threads from now on, in the calling thread (the session's
        governor: one while the CPU is contended, the budget again when not, and again on a
        run from another Python thread). numpy's BLAS is limited by the session itself; a
        backend with a pool of its own limits it here. Default: nothing to do."""

    def sync(self) -> None:
        """Wait until every launched step has finished (no-op for synchronous backends)."""
