"""One OpenCL context per process, device buffers as (arena, offset) handles, and the program cache.

Why handles instead of sub-buffers: ``clCreateSubBuffer`` needs origins aligned to
``MEM_BASE_ADDR_ALIGN`` (1024 bits on PoCL), which planner offsets are not. Kernels take the
arena plus a byte offset instead, so any planner layout works unchanged.

Why a disk cache: PoCL compiles through LLVM (hundreds of ms a program). Built binaries are kept
under ``~/.cache/walle/opencl/`` keyed by device, driver and source hash, so a second process
loads them instead of rebuilding.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from walle_core.ir.primitives import TensorSpec

CTYPES: dict[str, str] = {
    "bool": "uchar", "int8": "char", "uint8": "uchar", "int16": "short", "uint16": "ushort",
    "int32": "int", "uint32": "uint", "int64": "long", "uint64": "ulong", "float32": "float",
    "float64": "double",
}


@dataclass(frozen=True)
class DeviceBuffer:
    """A tensor on the device: ``nbytes`` bytes of ``arena`` starting at byte ``offset``."""

    arena: Any  # pyopencl.Buffer
    offset: int
    spec: TensorSpec


class DeviceConstant(np.ndarray):
    """A constant: the host array (what the executor returns when a constant is an output,
    since it copies constants instead of downloading them) carrying its device copy."""

    buffer: DeviceBuffer

    @property
    def arena(self) -> Any:
        return self.buffer.arena

    @property
    def offset(self) -> int:
        return self.buffer.offset


class Runtime:
    """The chosen device with its context, in-order queue and program cache."""

    def __init__(self) -> None:
        import pyopencl as cl

        self.cl = cl
        self.device = select_device(cl)
        self.context = cl.Context([self.device])
        self.queue = cl.CommandQueue(self.context)
        self.fp64 = "cl_khr_fp64" in self.device.extensions
        self.programs: dict[str, Any] = {}
        ident = f"{self.device.platform.name}|{self.device.name}|{self.device.driver_version}"
        self.device_ident = ident
        self.device_key = hashlib.sha256(ident.encode()).hexdigest()[:16]
        self.builds = 0

    def ctype(self, dtype: np.dtype[Any]) -> str | None:
        """The OpenCL C type storing ``dtype``, or None when kernels do not handle it."""
        name = np.dtype(dtype).name
        if name == "float64" and not self.fp64:
            return None
        return CTYPES.get(name) if np.dtype(dtype).isbuiltin == 1 else None

    def program(self, source: str) -> Any:
        """The built program for ``source``: memory cache, then disk binary, then a build."""
        if self.fp64 and "double" in source:
            source = "#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n" + source
        key = hashlib.sha256(source.encode()).hexdigest()
        if key in self.programs:
            return self.programs[key]
        cl = self.cl
        path = cache_dir() / f"{self.device_key}-{key[:32]}.bin"
        program = None
        if path.exists():
            try:
                program = cl.Program(self.context, [self.device], [path.read_bytes()]).build()
            except (cl.Error, OSError):
                program = None
        if program is None:
            program = cl.Program(self.context, source).build(options=["-cl-std=CL1.2"])
            self.builds += 1
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(program.get_info(cl.program_info.BINARIES)[0])
                tmp.replace(path)
            except OSError:
                pass  # a read-only home only costs rebuilds
        self.programs[key] = program
        return program


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "walle" / "opencl"


def select_device(cl: Any) -> Any:
    """``WALLE_OPENCL_DEVICE=platform:device`` (indices), else the first GPU, else device 0."""
    platforms = cl.get_platforms()
    chosen = os.environ.get("WALLE_OPENCL_DEVICE", "")
    if chosen:
        p, _, d = chosen.partition(":")
        return platforms[int(p)].get_devices()[int(d or 0)]
    devices = [dev for plat in platforms for dev in plat.get_devices()]
    if not devices:
        raise RuntimeError("no OpenCL device")
    gpus = [dev for dev in devices if dev.type & cl.device_type.GPU]
    return (gpus or devices)[0]


_RUNTIME: Runtime | None = None


def runtime() -> Runtime:
    """The process-wide runtime (contexts are expensive; every session shares one)."""
    global _RUNTIME
    if _RUNTIME is None:
        _RUNTIME = Runtime()
    return _RUNTIME


def global_size(n: int, local: int = 64) -> int:
    return max(local, (n + local - 1) // local * local)


def launch(n: int, local: int | None) -> tuple[tuple[int], tuple[int] | None]:
    """(global, local) sizes of a 1-D launch over ``n`` items; ``local`` None lets the driver
    choose (the global size is then rounded to 64)."""
    if local:
        return (global_size(n, local),), (local,)
    return (global_size(n),), None
