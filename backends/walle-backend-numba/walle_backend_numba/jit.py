"""Every parallel kernel is compiled twice: serial for small work, parallel for large.

A parallel launch costs microseconds on a quiet machine and milliseconds on a loaded one (a
worker descheduled mid-barrier; the session's governor then drops to one thread), while many
tensors are small; so each kernel has a serial twin (same code, ``prange`` as ``range``) and
:meth:`Dual.pick` chooses by the amount of work. The twin gets its own qualified name so
numba's on-disk cache keeps the two compilations apart.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import numba

from walle_backend_numba import nrtcache

# before any kernel's first dispatch: numba's runtime then comes from the cache (nrtcache.py)
nrtcache.install()

#: Elements (or multiply-adds) below which the serial twin wins. With the pool's workers
#: spinning between launches (~3 us a launch) 2^15 measured best on the 2-core VM: SqueezeNet
#: 5.78 -> 5.55 ms, ShuffleNet 5.20 -> 4.89 ms against 2^17 (2^13: no better).
PARALLEL_MIN = 1 << 15


class Dual:
    """A serial and a parallel compilation of one kernel."""

    def __init__(self, fn: Callable[..., Any], **options: Any) -> None:
        # numpy's error model: a float division is not checked for zero (Python's model
        # raises, and that check in a loop stops LLVM vectorising it: LRN 3.3 -> 0.84 ms)
        options.setdefault("error_model", "numpy")
        twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                                  fn.__defaults__, fn.__closure__)
        twin.__qualname__ = fn.__qualname__ + "_serial"
        self.serial = numba.njit(cache=True, **options)(twin)
        self.parallel = numba.njit(cache=True, parallel=True, **options)(fn)
        self.__doc__ = fn.__doc__

    def pick(self, work: int) -> Any:
        if work >= PARALLEL_MIN and numba.get_num_threads() > 1:
            return self.parallel
        return self.serial


def dual(**options: Any) -> Callable[[Callable[..., Any]], Dual]:
    """Decorator: ``@dual(fastmath=...)`` gives a :class:`Dual`."""
    return lambda fn: Dual(fn, **options)
