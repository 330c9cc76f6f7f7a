"""Unary, binary and variadic elementwise ops: broadcast rasters plus one Elementwise.

``out[i] = f(a[bcast_a(i)], b[bcast_b(i)], ...)``: operands whose shape differs from the output
(and are not a single element) are first expanded by a stride-0 raster, then one Elementwise
primitive evaluates the op's expression. Parametrised activations are expressions too (e.g.
LeakyRelu = ``where(x < 0, alpha * x, x)``), so chains fuse into one kernel later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from walle_core.geometry.common import X0, X1, X2, broadcast_shape, c, elementwise
from walle_core.geometry.context import NodeContext, lowers
from walle_core.ir import dtypes
from walle_core.ir.primitives import Expr

SIMPLE_UNARY = {
    "Abs": "abs", "Neg": "neg", "Exp": "exp", "Log": "log", "Sqrt": "sqrt",
    "Reciprocal": "reciprocal", "Floor": "floor", "Ceil": "ceil", "Round": "round",
    "Sign": "sign", "Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Erf": "erf",
    "Sin": "sin", "Cos": "cos", "Tan": "tan", "Asin": "asin", "Acos": "acos", "Atan": "atan",
    "Sinh": "sinh", "Cosh": "cosh", "Asinh": "asinh", "Acosh": "acosh", "Atanh": "atanh",
    "Not": "not", "Softplus": "softplus", "Softsign": "softsign", "BitwiseNot": "bitnot",
}
SIMPLE_BINARY = {
    "Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Pow": "pow",
    "And": "and", "Or": "or", "Xor": "xor", "BitwiseAnd": "bitand", "BitwiseOr": "bitor",
    "BitwiseXor": "bitxor",
}
COMPARE = {"Equal": "eq", "Less": "lt", "LessOrEqual": "le", "Greater": "gt",
           "GreaterOrEqual": "ge"}


def _a(ctx: NodeContext, key: str, default: float) -> Expr:
    return c(float(ctx.attr(key, default)))


def _gelu(k: NodeContext) -> Expr:
    half_x: Expr = ("mul", c(0.5), X0)
    if k.attr("approximate", "none") == "tanh":
        cube: Expr = ("mul", c(0.044715), ("mul", X0, ("mul", X0, X0)))
        inner: Expr = ("mul", c(0.7978845608028654), ("add", X0, cube))
        return ("mul", half_x, ("add", c(1), ("tanh", inner)))
    return ("mul", half_x, ("add", c(1), ("erf", ("mul", X0, c(0.7071067811865476)))))


def _isinf(k: NodeContext) -> Expr:
    pos, neg = k.attr("detect_positive", 1), k.attr("detect_negative", 1)
    if pos and neg:
        return ("isinf", X0)
    if pos:
        return ("isposinf", X0)
    if neg:
        return ("isneginf", X0)
    return ("and", ("isinf", X0), c(False))


PARAM_UNARY: dict[str, Callable[[NodeContext], Expr]] = {
    "LeakyRelu": lambda k: ("where", ("lt", X0, c(0)), ("mul", X0, _a(k, "alpha", 0.01)), X0),
    "Elu": lambda k: ("where", ("lt", X0, c(0)),
                      ("mul", _a(k, "alpha", 1.0), ("sub", ("exp", X0), c(1))), X0),
    "Selu": lambda k: ("mul", _a(k, "gamma", 1.0507009873554805), (
        "where", ("le", X0, c(0)),
        ("mul", _a(k, "alpha", 1.6732632423543772), ("sub", ("exp", X0), c(1))), X0)),
    "Celu": lambda k: ("add", ("max", X0, c(0)), ("min", c(0), ("mul", _a(k, "alpha", 1.0), (
        "sub", ("exp", ("div", X0, _a(k, "alpha", 1.0))), c(1))))),
    "HardSigmoid": lambda k: ("clip", ("add", ("mul", X0, _a(k, "alpha", 0.2)),
                                       _a(k, "beta", 0.5)), c(0), c(1)),
    "HardSwish": lambda k: ("mul", X0, ("clip", ("add", ("mul", X0, c(1 / 6)), c(0.5)),
                                        c(0), c(1))),
    "ThresholdedRelu": lambda k: ("where", ("gt", X0, _a(k, "alpha", 1.0)), X0, c(0)),
    "Mish": lambda k: ("mul", X0, ("tanh", ("softplus", X0))),
    "Shrink": lambda k: ("where", ("lt", X0, ("neg", _a(k, "lambd", 0.5))),
                         ("add", X0, _a(k, "bias", 0.0)),
                         ("where", ("gt", X0, _a(k, "lambd", 0.5)),
                          ("sub", X0, _a(k, "bias", 0.0)), c(0))),
    "Gelu": lambda k: _gelu(k),
    "IsNaN": lambda k: ("isnan", X0),
    "IsInf": lambda k: _isinf(k),
}
BOOL_OUT = {"IsNaN", "IsInf"}


def _emit(ctx: NodeContext, expr: Expr, slots: list[int], dtype: Any = None) -> list[int]:
    shape = broadcast_shape(ctx, *(ctx.builder.slots[s].shape for s in slots))
    out_dtype = dtype or ctx.builder.slots[slots[0]].dtype
    return [elementwise(ctx, expr, slots, shape, out_dtype)]


def _lower_unary(ctx: NodeContext) -> list[int]:
    if ctx.op_type in SIMPLE_UNARY:
        expr: Expr = (SIMPLE_UNARY[ctx.op_type], X0)
    else:
        expr = PARAM_UNARY[ctx.op_type](ctx)
    dtype = dtypes.boolean if ctx.op_type in BOOL_OUT else None
    return _emit(ctx, expr, [ctx.inputs[0]], dtype)


def _lower_binary(ctx: NodeContext) -> list[int]:
    op = ctx.op_type
    slots = [ctx.inputs[0], ctx.inputs[1]]
    if op in COMPARE:
        return _emit(ctx, (COMPARE[op], X0, X1), slots, dtypes.boolean)
    if op == "Mod":
        return _emit(ctx, ("fmod" if ctx.attr("fmod", 0) else "mod", X0, X1), slots)
    if op == "BitShift":
        return _emit(ctx, ("shl" if ctx.attr("direction") == "LEFT" else "shr", X0, X1), slots)
    if op == "PRelu":
        slope, x = ctx.shape(1), ctx.shape(0)
        if len(slope) == 1 and len(x) > 2 and slope[0] == x[1] and slope[0] != x[-1]:
            from walle_core.geometry.reshape import relabel

            slots[1] = relabel(ctx, slots[1], (slope[0],) + (1,) * (len(x) - 2))
        return _emit(ctx, ("where", ("lt", X0, c(0)), ("mul", X0, X1), X0), slots)
    return _emit(ctx, (SIMPLE_BINARY[op], X0, X1), slots)


for _op in [*SIMPLE_UNARY, *PARAM_UNARY]:
    lowers(_op)(_lower_unary)
for _op in [*SIMPLE_BINARY, *COMPARE, "Mod", "BitShift", "PRelu"]:
    lowers(_op)(_lower_binary)


@lowers("Sum", "Mean", "Max", "Min")
def lower_variadic(ctx: NodeContext) -> list[int]:
    slots = [s for s in ctx.inputs if s >= 0]
    op = {"Sum": "add", "Mean": "add", "Max": "max", "Min": "min"}[ctx.op_type]
    expr: Expr = X0
    for k in range(1, len(slots)):
        expr = (op, expr, ("in", k))
    if ctx.op_type == "Mean":
        expr = ("div", expr, c(len(slots)))
    return _emit(ctx, expr, slots)


@lowers("Where")
def lower_where(ctx: NodeContext) -> list[int]:
    slots = [ctx.inputs[0], ctx.inputs[1], ctx.inputs[2]]
    return _emit(ctx, ("where", X0, X1, X2), slots, ctx.dtype(1))


@lowers("Clip")
def lower_clip(ctx: NodeContext) -> list[int]:
    x = ctx.inputs[0]
    if ctx.opset < 11:
        lo, hi = ctx.attr("min", -3.4028234663852886e38), ctx.attr("max", 3.4028234663852886e38)
        return _emit(ctx, ("clip", X0, c(float(lo)), c(float(hi))), [x])
    expr: Expr = X0
    slots = [x]
    if ctx.has(1):
        slots.append(ctx.inputs[1])
        expr = ("max", expr, ("in", len(slots) - 1))
    if ctx.has(2):
        slots.append(ctx.inputs[2])
        expr = ("min", expr, ("in", len(slots) - 1))
    return _emit(ctx, expr, slots)


@lowers("BatchNormalization")
def lower_batch_norm(ctx: NodeContext) -> list[int]:
    """Inference form: ``y = x * a + b`` with ``a = scale / sqrt(var + eps)``,
    ``b = bias - mean * a``, per channel (axis 1)."""
    if ctx.attr("training_mode", 0) and ctx.n_outputs > 1:
        from walle_core.geometry.context import Decline

        raise Decline("training-mode BatchNormalization")
    shape = ctx.shape(0)
    scale, bias, mean, var = ctx.inputs[1:5]
    eps = float(ctx.attr("epsilon", 1e-5))
    ch = (ctx.builder.slots[scale].shape[0],)
    a = elementwise(ctx, ("div", X0, ("sqrt", ("add", X1, c(eps)))), [scale, var], ch,
                    ctx.dtype(1))
    b = elementwise(ctx, ("sub", X0, ("mul", X1, X2)), [bias, mean, a], ch, ctx.dtype(1))
    from walle_core.geometry.reshape import relabel

    view = (ch[0],) + (1,) * (len(shape) - 2)
    a, b = relabel(ctx, a, view), relabel(ctx, b, view)
    return [elementwise(ctx, ("add", ("mul", X0, X1), X2), [ctx.inputs[0], a, b], shape,
                        ctx.dtype(0))]


