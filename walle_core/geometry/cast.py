"""Cast and CastLike: the Cast primitive (strings go to a native kernel)."""

from __future__ import annotations

from walle_core.geometry.context import Decline, NodeContext, lowers
from walle_core.ir import dtypes
from walle_core.ir.primitives import Cast


@lowers("Cast", "CastLike")
def lower_cast(ctx: NodeContext) -> list[int]:
    if ctx.op_type == "Cast":
        try:
            to = dtypes.from_onnx(int(ctx.attr("to")))
        except KeyError:
            raise ctx.fail(f"unknown target type {ctx.attr('to')}") from None
    else:
        to = ctx.dtype(1)
    if "string" in (to.name, ctx.dtype(0).name) or to.itemsize == 1 and to.name.startswith(
        ("float4", "float8", "int4", "uint4", "int2", "uint2")
    ):
        raise Decline("string and sub-byte casts use the native kernel")
    out = ctx.out(ctx.shape(0), to)
    ctx.emit(Cast(to, bool(ctx.attr("saturate", 1))), [ctx.inputs[0]], [out])
    return [out]
