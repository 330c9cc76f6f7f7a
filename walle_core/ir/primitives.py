"""The primitive op set: the small, versioned contract every backend implements.

Geometry lowers every graph op to these; a backend that implements them all runs every model.
Primitives carry parameters only: the tensors they read and write are named by a
:class:`Step` (slot ids into a program's slot table), so a primitive can be moved, fused or
compiled without knowing where its data lives. Precise semantics: ``docs/engine/primitives.md``.
Adding a primitive (or changing one's meaning) bumps ``PLUGIN_API_VERSION``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from walle_core.ir.dtypes import DType

Triple = tuple[int, int, int]


@dataclass(frozen=True)
class Region:
    """A 3-D affine copy, in elements of flat row-major buffers.

    ``for i, j, k in ndindex(size): dst[dst_offset + i*ds0 + j*ds1 + k*ds2] =
    src[src_offset + i*ss0 + j*ss1 + k*ss2]``, where ``src`` is the step input at position
    ``src`` and ``dst`` the step output.
    """

    src: int
    src_offset: int
    src_strides: Triple
    dst_offset: int
    dst_strides: Triple
    size: Triple

    @property
    def count(self) -> int:
        return self.size[0] * self.size[1] * self.size[2]


def contiguous(size: Triple, strides: Triple) -> bool:
    """Whether one side of a region (its ``size`` and that side's strides) walks its elements
    in one contiguous row-major run."""
    expect = 1
    for n, s in zip(reversed(size), reversed(strides), strict=True):
        if n != 1 and s != expect:
            return False
        expect *= n
    return True


@dataclass(frozen=True)
class Primitive:
    """Base class; ``kind`` is the name backends dispatch on."""

    @property
    def kind(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class Raster(Primitive):
    """Write one output from regions of the inputs.

    The output is first set to ``fill`` (when not None), then the regions are applied in order;
    with ``accumulate`` each region adds into the output instead of overwriting it.
    """

    regions: tuple[Region, ...]
    fill: float | int | None = None
    accumulate: bool = False


# Elementwise expressions: ("in", k) is input k, ("const", v) a scalar; any other tuple is
# (op, *operands) with op from ELEMENTWISE_OPS. Inputs have the output's shape or one element.
Expr = tuple[Any, ...]

UNARY_OPS = frozenset(
    "neg abs exp log sqrt reciprocal floor ceil round sign relu sigmoid tanh erf sin cos tan "
    "asin acos atan sinh cosh asinh acosh atanh not isnan isinf isposinf isneginf softplus "
    "softsign bitnot identity".split()
)
BINARY_OPS = frozenset(
    "add sub mul div pow max min mod fmod eq lt le gt ge and or xor bitand bitor bitxor "
    "shl shr".split()
)
TERNARY_OPS = frozenset({"where", "clip"})
ELEMENTWISE_OPS = UNARY_OPS | BINARY_OPS | TERNARY_OPS


def expr_ops(expr: Expr) -> int:
    """Operations in an Elementwise expression (inputs and constants count 0)."""
    if expr[0] in ("in", "const"):
        return 0
    return 1 + sum(expr_ops(e) for e in expr[1:])


@dataclass(frozen=True)
class Elementwise(Primitive):
    """``out = expr(inputs)`` computed in ``compute`` dtype, then stored as the output dtype."""

    expr: Expr
    compute: DType | None = None


REDUCE_OPS = frozenset(
    "sum mean max min prod sum_square l1 l2 log_sum log_sum_exp argmax argmin".split()
)


@dataclass(frozen=True)
class Reduce(Primitive):
    """Reduce ``axes`` of the input with ``op``; ``keepdims`` keeps them as size 1.

    argmax/argmin take exactly one axis and return int64 (first occurrence, or last with
    ``select_last``). An empty reduced set gives the op's identity.
    """

    op: str
    axes: tuple[int, ...]
    keepdims: bool = True
    select_last: bool = False


@dataclass(frozen=True)
class MatMul(Primitive):
    """``out = act(alpha * op(A) @ op(B) + beta * bias)`` over batch dims.

    Inputs: A ``[..., M, K]`` (``[..., K, M]`` with ``trans_a``), B likewise, optional bias
    broadcastable to the output. Batch dims of A and B are equal, or one side has none.
    ``activation`` is "" / "relu" / "clip" (``act_params`` = (min, max)) / "sigmoid" / "tanh".
    """

    trans_a: bool = False
    trans_b: bool = False
    alpha: float = 1.0
    beta: float = 1.0
    activation: str = ""
    act_params: tuple[float, ...] = ()


@dataclass(frozen=True)
class Cast(Primitive):
    """Convert elements to ``to`` (numpy conversion; ``saturate`` for float8 targets)."""

    to: DType
    saturate: bool = True


REDUCTIONS = frozenset({"none", "add", "mul", "max", "min"})


@dataclass(frozen=True)
class Loop(Primitive):
    """Index-driven copy: the gather/scatter primitive.

    Inputs: ``[base, src, src_offsets?, dst_offsets?]``. The output starts as a copy of
    ``base`` (same shape) or, with ``base`` absent (``has_base=False``), as ``fill``. Then for
    ``i in range(count)``: ``so = region.src_offset + (src_offsets[i] if given else i *
    src_step)``, ``do`` likewise, and the 3-D ``region`` is copied from ``src`` at ``so`` to
    the output at ``do`` combining with ``reduction`` (none overwrites; later i win).
    """

    count: int
    region: Region
    has_base: bool = False
    has_src_offsets: bool = False
    has_dst_offsets: bool = False
    src_step: int = 0
    dst_step: int = 0
    reduction: str = "none"
    fill: float | int = 0


@dataclass(frozen=True)
class Kernel(Primitive):
    """A composite op a backend runs natively (``Backend.native_ops``), outside geometry."""

    op_type: str
    domain: str = ""
    attrs: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    opset: int = 0


PRIMITIVE_KINDS = ("Raster", "Elementwise", "Reduce", "MatMul", "Cast", "Loop", "Kernel")


@dataclass(frozen=True)
class TensorSpec:
    """Shape and dtype of one slot, fully concrete after planning."""

    shape: tuple[int, ...]
    dtype: DType

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


@dataclass
class Step:
    """One primitive call: reads slots ``inputs`` (-1 = absent), writes slots ``outputs``."""

    prim: Primitive
    inputs: list[int]
    outputs: list[int]
    origin: str = ""  # the graph node this step came from, for explain and errors
