"""Walle's OpenCL backend, through pyopencl.

pyopencl is imported only inside :meth:`OpenCLBackend.probe` and when a backend instance is
created: loading the ICD loader and drivers is slow and must not happen when backends are merely
listed. Execution lives in ``device`` (context, buffers, program cache), ``execution`` (per-step
kernel or host fallback) and one module per kernel family.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from walle_core.backend import Algorithm, Availability, Device, ExecutionBackend, StepTimer
from walle_core.ir.primitives import Primitive, Step, TensorSpec
from walle_core.plugin import PLUGIN_API_VERSION

if TYPE_CHECKING:
    import numpy as np

    from walle_core.search.profile import CostProfile

__all__ = ["OpenCLBackend"]

NO_PLATFORM_HINT = (
    "no OpenCL platform found: install an ICD (Debian: pocl-opencl-icd; PyPI: "
    "pocl-binary-distribution) or a GPU driver"
)

SMOKE_SOURCE = """
__kernel void axpy(const float alpha, __global const float *x, __global const float *y,
                   __global float *out) {
    const size_t i = get_global_id(0);
    out[i] = alpha * x[i] + y[i];
}
"""


def _smoke(cl: Any, device: Any) -> str:
    """Build and run a small kernel on ``device``; "" when the result is right, else why not."""
    import numpy as np

    context = cl.Context([device])
    queue = cl.CommandQueue(context)
    x = np.arange(256, dtype=np.float32)
    y = np.ones(256, dtype=np.float32)
    flags = cl.mem_flags
    x_buf = cl.Buffer(context, flags.READ_ONLY | flags.COPY_HOST_PTR, hostbuf=x)
    y_buf = cl.Buffer(context, flags.READ_ONLY | flags.COPY_HOST_PTR, hostbuf=y)
    out_buf = cl.Buffer(context, flags.WRITE_ONLY, x.nbytes)
    program = cl.Program(context, SMOKE_SOURCE).build()
    program.axpy(queue, x.shape, None, np.float32(2.0), x_buf, y_buf, out_buf)
    out = np.empty_like(x)
    cl.enqueue_copy(queue, out, out_buf)
    queue.finish()
    return "" if np.array_equal(out, 2 * x + 1) else "smoke kernel returned a wrong result"


def _describe(cl: Any, platform: Any, device: Any, smoke: str) -> Device:
    kind = cl.device_type.to_string(device.type).lower()
    return Device(
        name=device.name.strip(),
        kind="gpu" if "gpu" in kind else ("cpu" if "cpu" in kind else kind),
        platform=f"{platform.name.strip()} ({platform.version.strip()})",
        details={
            "vendor": device.vendor.strip(),
            "opencl_version": device.version.strip(),
            "driver": device.driver_version.strip(),
            "compute_units": device.max_compute_units,
            "global_mem_mib": device.global_mem_size // (1 << 20),
            "max_work_group_size": device.max_work_group_size,
            "smoke": "pass" if not smoke else f"fail: {smoke}",
        },
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("walle-backend-opencl")
    except PackageNotFoundError:
        return "dev"


_PROBE = """
import pyopencl as cl
print(int(any(d.type & ~cl.device_type.CPU for p in cl.get_platforms() for d in p.get_devices())))
"""


def _has_non_cpu_device() -> bool:
    import hashlib
    import json
    import subprocess
    import sys
    from pathlib import Path

    vendors = Path(os.environ.get("OCL_ICD_VENDORS", "/etc/OpenCL/vendors"))
    try:
        icds = sorted(f"{p.name}:{p.stat().st_mtime_ns}" for p in vendors.iterdir())
    except OSError:
        icds = []
    key = hashlib.sha256(json.dumps([icds, os.environ.get("OPENCL_VENDOR_PATH", ""),
                                     sys.executable]).encode()).hexdigest()[:16]
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "walle" / "opencl" / f"auto-{key}.json"
    try:
        return bool(json.loads(path.read_text())["non_cpu"])
    except (OSError, ValueError, KeyError):
        pass
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                             timeout=60)
        answer = out.returncode == 0 and out.stdout.strip().endswith("1")
    except (OSError, subprocess.TimeoutExpired):
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"non_cpu": answer}))
    except OSError:
        pass
    return answer


class OpenCLBackend(ExecutionBackend):
    """OpenCL kernels built with pyopencl, for GPUs and CPU runtimes such as PoCL."""

    name: ClassVar[str] = "opencl"
    api_version: ClassVar[int] = PLUGIN_API_VERSION
    requires: ClassVar[tuple[str, ...]] = ("pyopencl", "numpy")

    @classmethod
    def probe(cls) -> Availability:
        try:
            import pyopencl as cl
        except ImportError as error:  # e.g. the ICD loader library itself is missing
            return Availability.unavailable(f"pyopencl cannot be imported: {error}")
        try:
            platforms = cl.get_platforms()
        except cl.Error:
            platforms = []
        devices: list[Device] = []
        failures: list[str] = []
        for platform in platforms:
            try:
                platform_devices = platform.get_devices()
            except cl.Error as error:
                failures.append(f"{platform.name}: {error}")
                continue
            for device in platform_devices:
                try:
                    smoke = _smoke(cl, device)
                except cl.Error as error:
                    smoke = f"{type(error).__name__}: {error}"
                devices.append(_describe(cl, platform, device, smoke))
                if smoke:
                    failures.append(f"{device.name.strip()}: {smoke}")
        if not platforms:
            return Availability.unavailable(NO_PLATFORM_HINT)
        if not any(d.details["smoke"] == "pass" for d in devices):
            reason = "; ".join(failures) or "OpenCL platforms found but no devices"
            return Availability(ok=False, reason=reason, devices=tuple(devices))
        return Availability(ok=True, reason="; ".join(failures), devices=tuple(devices))

    # ---- execution contract -------------------------------------------------------------

    @classmethod
    def auto_candidate(cls) -> bool:
        """Searched by ``backend="auto"`` only when some OpenCL device is not a CPU: on a
        CPU-only runtime (PoCL) the host backends use the same cores without transfers.

        Asked in a child process and cached per set of installed ICDs: loading an OpenCL
        runtime into a process that will not use it costs tens of MB (PoCL links LLVM)."""
        return _has_non_cpu_device()

    #: Refined per instance to ``opencl:<platform>/<device>``: buffers are device memory, so
    #: the core inserts a transfer wherever a tensor crosses to or from a host backend.
    memory_domain: str = "opencl"

    def __init__(self, threads: int | None = None) -> None:
        super().__init__(threads)
        if threads:  # read by PoCL when the platform is first initialised
            os.environ.setdefault("POCL_MAX_PTHREAD_COUNT", str(threads))
        from walle_backend_opencl.device import runtime
        from walle_backend_opencl.tuning import Tuner

        self.rt = runtime()
        dev = self.rt.device
        self.memory_domain = f"opencl:{dev.platform.name.strip()}/{dev.name.strip()}"
        self.version = _version()
        self.tuner = Tuner(self.rt)
        self.kernel_steps = 0
        self.fallback_steps = 0

    def calibration_key(self) -> str:
        """Platform, device and driver (not the host CPU: a GPU's rates do not depend on it),
        this package's version and PoCL's thread count, which changes a CPU device's rates."""
        threads = os.environ.get("POCL_MAX_PTHREAD_COUNT", "")
        return f"opencl|{self.version}|{self.rt.device_ident}|pocl_threads={threads}"

    # ---- what runs on the device ---------------------------------------------------------

    def native_ops(self) -> set[tuple[str, str]]:
        """Composite ops with a device kernel: 1-D/2-D Conv (an implicit GEMM, see conv.py).
        Every other composite op is a reference (host) kernel placed by the core's search."""
        return {("", "Conv")}

    def fused_activations(self) -> set[tuple[str, str]]:
        """The Conv kernel applies ``attrs["fused_activation"]`` in its store (``conv.py``)."""
        return {("", "Conv")}

    def prefers_native(self, domain: str, op_type: str) -> bool:
        """Conv runs as one native step rather than im2col raster + MatMul (see README)."""
        return (domain, op_type) == ("", "Conv")

    def prefers_native_for(self, domain: str, op_type: str,
                           inputs: Sequence[TensorSpec | None]) -> bool:
        """Only the Convs the native kernel runs (1-D/2-D, float32 or float64 where the
        device has doubles); others decompose into device primitives instead of leaving the
        whole Conv to the host."""
        if not self.prefers_native(domain, op_type) or len(inputs) < 2:
            return False
        x, w = inputs[0], inputs[1]
        if x is None or w is None or len(x.shape) not in (3, 4) or len(w.shape) != len(x.shape):
            return False
        dt = x.dtype.np
        return dt.kind == "f" and dt.itemsize >= 4 and self.rt.ctype(dt) is not None and \
            all(s is None or s.dtype.np == dt for s in inputs)

    def supports(self, primitive: Primitive) -> bool:
        """False for what no device kernel runs whatever the shapes: composite ops other than
        Conv, scatter/reducing Loops, rasters with a region writing one element twice, reduce
        ops or MatMul activations without code, casts to types OpenCL C lacks. Per-dtype and
        per-shape limits are found by :meth:`algorithms`, which declines the step."""
        import numpy as np

        from walle_backend_opencl import matmul, raster, reduce
        from walle_core.ir.primitives import Cast, Kernel, Loop, MatMul, Raster, Reduce

        if isinstance(primitive, Kernel):
            return (primitive.domain, primitive.op_type) in self.native_ops()
        if isinstance(primitive, Loop):
            return primitive.reduction == "none" and not primitive.has_dst_offsets
        if isinstance(primitive, Raster):
            return not any(r.count and raster.self_overlapping(r) for r in primitive.regions)
        if isinstance(primitive, Reduce):
            return primitive.op in reduce.OPS
        if isinstance(primitive, MatMul):
            return primitive.activation in matmul.ACTS
        if isinstance(primitive, Cast):
            to = primitive.to
            return to.name != "string" and self.rt.ctype(np.dtype(to.np)) is not None
        return super().supports(primitive)

    def algorithms(self, step: Step, inputs: Sequence[TensorSpec | None],
                   outputs: Sequence[TensorSpec], profile: CostProfile) -> list[Algorithm]:
        """Each kernel variant (local work size, or MatMul/Conv tile) with its cost measured on
        the device and cached per device (tuning.py); small steps get the analytic estimate.
        Raises :class:`~walle_backend_opencl.tuning.Declined` (a ``WalleError``) when no kernel
        covers the step's dtypes or shapes, so the search places it on a host backend."""
        from walle_backend_opencl import tuning

        return tuning.algorithms(self.rt, self.tuner, step, inputs, outputs,
                                 profile.estimate(step, inputs, outputs))

    def calibrate_extra(self, time_step: StepTimer) -> dict[str, float]:
        """Every tile variant on a 256^3 GEMM and every local size on a 1M-element add:
        recorded in the cached profile beside the core's rates (``walle backends calibrate``)."""
        import numpy as np

        from walle_backend_opencl import tuning
        from walle_core.ir import dtypes
        from walle_core.ir.primitives import Elementwise, MatMul

        f32 = dtypes.from_numpy(np.float32)
        extra: dict[str, float] = {}
        mm = [TensorSpec((256, 256), f32)] * 2
        for name, params in tuning.variants(self.rt, "matmul", 4):
            alg = Algorithm(name, 0.0, tuple(sorted(params.items())))
            extra[f"gemm256/{name}"] = time_step(MatMul(), [*mm, None],
                                                 [TensorSpec((256, 256), f32)], alg)
        add = Elementwise(("add", ("in", 0), ("in", 1)))
        vec = TensorSpec((1 << 20,), f32)
        for name, params in tuning.variants(self.rt, "elementwise", 4):
            alg = Algorithm(name, 0.0, tuple(sorted(params.items())))
            extra[f"add1m/{name}"] = time_step(add, [vec, vec], [vec], alg)
        return extra

    def allocate(self, nbytes: int) -> Any:
        cl = self.rt.cl
        return cl.Buffer(self.rt.context, cl.mem_flags.READ_WRITE, max(nbytes, 8))

    def view(self, arena: Any, offset: int, spec: TensorSpec) -> Any:
        import numpy as np

        from walle_backend_opencl.device import DeviceBuffer

        if spec.dtype.name == "string":
            return np.empty(spec.shape, dtype=object)  # strings never leave the host
        return DeviceBuffer(arena, offset, spec)

    def constant(self, array: np.ndarray) -> Any:
        import numpy as np

        from walle_backend_opencl.device import DeviceConstant
        from walle_core.ir.dtypes import ALL

        array = np.asarray(array, order="C")  # ascontiguousarray would make 0-d arrays 1-d
        dtype = next((d for d in ALL.values() if d.name != "string" and d.np == array.dtype),
                     None)
        if dtype is None:
            return array
        buffer = self.view(self.allocate(array.nbytes), 0, TensorSpec(array.shape, dtype))
        self.upload(array, buffer)
        held = array.copy().view(DeviceConstant)
        held.buffer = buffer
        return held

    def upload(self, array: np.ndarray, buffer: Any) -> None:
        from walle_backend_opencl.execution import upload

        upload(array, buffer)

    def download(self, buffer: Any) -> np.ndarray:
        import numpy as np

        from walle_backend_opencl.execution import to_host

        return np.array(to_host(buffer), copy=True)

    def compile(self, step: Step, inputs: Sequence[TensorSpec | None],
                outputs: Sequence[TensorSpec], algorithm: Algorithm | None = None) -> Any:
        """The device kernel for ``step`` (the variant ``algorithm`` names, else the default).
        Host fallback only when compiled without the search (which would have declined the
        step) or when the driver rejects a kernel at build time; counted either way."""
        from walle_backend_opencl.execution import compile_step

        params = dict(algorithm.params) if algorithm is not None else None
        run, on_device = compile_step(self.rt, step, inputs, outputs, params)
        if on_device:
            self.kernel_steps += 1
        else:
            self.fallback_steps += 1
        return run

    def sync(self) -> None:
        self.rt.queue.finish()
