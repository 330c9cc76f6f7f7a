"""Fused Elementwise (and Cast) code generation: one OpenCL kernel per expression and dtypes.

Types follow the reference exactly: every node's dtype is found by running the reference's own
numpy code (``walle_core.runtime.numpy_kernels.evaluate``) on one-element dummies, so numpy
promotion (NEP 50 weak Python scalars included) decides, not a table of ours. Each operand is
converted to its node's operand type before the op, and the root is converted to the output
dtype the way ``astype`` does (``!= 0`` for bool). Any node whose dtype has no OpenCL type
(float16, float64 without cl_khr_fp64, ...) raises :class:`Unsupported` and the step runs on
the host.

Kernel layout: ``out`` and each input are (uchar* arena, long byte offset) pairs; inputs of one
element are read at index 0 (scalar broadcast), others at the work-item index; ``n`` bounds the
rounded-up global size.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from walle_core.ir.primitives import Expr
from walle_core.runtime import numpy_kernels as nk

FLOAT_FN = {
    "exp": "exp", "log": "log", "sqrt": "sqrt", "floor": "floor", "ceil": "ceil",
    "round": "rint", "tanh": "tanh", "erf": "erf", "sin": "sin", "cos": "cos", "tan": "tan",
    "asin": "asin", "acos": "acos", "atan": "atan", "sinh": "sinh", "cosh": "cosh",
    "asinh": "asinh", "acosh": "acosh", "atanh": "atanh",
}
COMPARE = {"eq": "==", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
ARITH = {"add": "+", "sub": "-", "mul": "*"}
BITS = {"bitand": "&", "bitor": "|", "bitxor": "^"}


class Unsupported(Exception):
    """This expression or dtype has no kernel; the caller falls back to numpy."""


class Codegen:
    """Walks an expression, emitting one C expression string per node."""

    def __init__(self, ctype: Any, dummies: list[Any]) -> None:
        self.ctype = ctype  # np.dtype -> C type name or None
        self.dummies = dummies

    def c(self, dtype: np.dtype[Any]) -> str:
        name = self.ctype(dtype)
        if name is None:
            raise Unsupported(f"dtype {dtype}")
        return str(name)

    def dummy(self, expr: Expr) -> Any:
        try:
            with np.errstate(all="ignore"):
                return nk.evaluate(expr, self.dummies, (1,))
        except Exception as exc:  # numpy rejects this op/dtype pair: so will we
            raise Unsupported(f"{expr[0]}: {exc}") from exc

    def dtype_of(self, expr: Expr) -> np.dtype[Any]:
        value = self.dummy(expr)
        return np.asarray(value).dtype

    def operand_type(self, args: list[Expr]) -> np.dtype[Any]:
        return np.result_type(*(self.dummy(a) for a in args))

    def conv(self, expr: Expr, dtype: np.dtype[Any]) -> str:
        """``expr`` converted to ``dtype`` (constants become literals of that type)."""
        if expr[0] == "const":
            return literal(expr[1], dtype, self.c(dtype))
        src = self.dtype_of(expr)
        code = self.gen(expr)
        if src == dtype:
            return code
        if dtype == np.bool_:
            return f"(uchar)(({code}) != 0)"
        return f"(({self.c(dtype)})({code}))"

    def gen(self, expr: Expr) -> str:
        head = expr[0]
        if head == "in":
            return f"v{expr[1]}"
        if head == "const":
            return literal(expr[1], self.dtype_of(expr), self.c(self.dtype_of(expr)))
        out = self.dtype_of(expr)
        self.c(out)
        args = list(expr[1:])
        if head in nk.UNARY:
            code = self.unary(head, args[0], out)
        elif head in ("where", "clip"):
            code = self.ternary(head, args, out)
        else:
            code = self.binary(head, args, out)
        if out == np.bool_:
            return f"((uchar)(({code}) != 0))"
        return f"(({self.c(out)})({code}))"

    def unary(self, op: str, arg: Expr, out: np.dtype[Any]) -> str:
        src = self.dtype_of(arg)
        x = self.conv(arg, out) if out.kind == "f" else self.gen(arg)
        isf = src.kind == "f"
        if op in ("isnan", "isinf", "isposinf", "isneginf"):
            if not isf:
                return "0"
            a = self.gen(arg)
            return {"isnan": f"isnan({a})", "isinf": f"isinf({a})",
                    "isposinf": f"(isinf({a}) && {a} > 0)",
                    "isneginf": f"(isinf({a}) && {a} < 0)"}[op]
        if op == "not":
            return f"!({self.gen(arg)})"
        if op == "identity":
            return x
        if op == "neg":
            return f"(-{x})" if out != np.bool_ else f"!({x})"
        if op == "abs":
            return f"fabs({x})" if out.kind == "f" else f"({x} < 0 ? -{x} : {x})"
        if op == "sign":
            if out.kind == "f":
                return f"(isnan({x}) ? {x} : ({x} > 0 ? 1 : ({x} < 0 ? -1 : 0)))"
            return f"({x} > 0 ? 1 : ({x} < 0 ? -1 : 0))"
        if op == "relu":
            return f"((isnan({x}) || {x} > 0) ? {x} : 0)" if out.kind == "f" else \
                f"({x} > 0 ? {x} : 0)"
        if op == "bitnot":
            return f"(~{x})" if out != np.bool_ else f"!({x})"
        if op == "reciprocal":
            if out.kind == "f":
                return f"(1 / {x})"
            return f"({x} == 0 ? 0 : ({x} == 1 ? 1 : ({x} == -1 ? -1 : ({x} < 0 ? -1 : 0))))"
        if out.kind != "f":
            if op in ("floor", "ceil", "round"):
                return x
            raise Unsupported(f"{op} on {out}")
        if op == "sigmoid":
            return f"(1 / (1 + exp(-{x})))"
        if op == "softplus":
            # the reference is logaddexp(x * 0, x): NaN at +-inf, where x * 0 is NaN
            return f"(isinf({x}) ? {x} - {x} : fmax({x}, 0) + log1p(exp(-fabs({x}))))"
        if op == "softsign":
            return f"({x} / (1 + fabs({x})))"
        if op in FLOAT_FN:
            return f"{FLOAT_FN[op]}({x})"
        raise Unsupported(op)

    def binary(self, op: str, args: list[Expr], out: np.dtype[Any]) -> str:
        t = self.operand_type(args)
        if op == "div" and out.kind == "f":
            t = out  # numpy divides bools (and any non-integer pair) as true division
        ct = self.c(t)
        a, b = (self.conv(e, t) for e in args)
        isf = t.kind == "f"
        if op in COMPARE:
            return f"({a} {COMPARE[op]} {b})"
        if op in ("and", "or", "xor"):
            sym = {"and": "&&", "or": "||", "xor": "!="}[op]
            return f"(({a} != 0) {sym} ({b} != 0))"
        if op in ARITH:
            return f"({a} {ARITH[op]} {b})"
        if op in BITS:
            return f"({a} {BITS[op]} {b})"
        if op in ("max", "min"):
            cmp = ">" if op == "max" else "<"
            nan = f"isnan({a}) || " if isf else ""
            return f"(({nan}{a} {cmp} {b}) ? {a} : {b})"
        if op == "div":
            return f"({a} / {b})" if isf else f"({b} == 0 ? {a} : {a} / {b})"
        if op == "fmod":
            return f"fmod({a}, {b})" if isf else f"({b} == 0 ? ({ct})0 : {a} % {b})"
        if op == "mod":
            return f"wmod_{ct}({a}, {b})"
        if op in ("shl", "shr"):
            bits = t.itemsize * 8
            if op == "shl":
                return f"(({b} >= {bits} || {b} < 0) ? ({ct})0 : ({ct})({a} << {b}))"
            return f"(({b} >= {bits} || {b} < 0) ? ({ct})({a} < 0 ? -1 : 0) : ({ct})({a} >> {b}))"
        if op == "pow":
            if out.kind == "f":
                return f"pow({self.conv(args[0], out)}, {self.conv(args[1], out)})"
            wide = "double" if self.ctype(np.dtype("float64")) else "float"
            return f"pow(({wide})({self.gen(args[0])}), ({wide})({self.gen(args[1])}))"
        raise Unsupported(op)

    def ternary(self, op: str, args: list[Expr], out: np.dtype[Any]) -> str:
        if op == "where":
            cond = self.gen(args[0])
            a, b = self.conv(args[1], out), self.conv(args[2], out)
            return f"(({cond}) ? {a} : {b})"
        t1 = np.result_type(self.dummy(args[0]), self.dummy(args[1]))
        lo = self.binary("max", [args[0], args[1]], t1)
        inner = ("max", args[0], args[1])
        t2 = np.result_type(self.dummy(inner), self.dummy(args[2]))
        hi = self.conv(args[2], t2)
        lo2 = lo if t1 == t2 else f"(({self.c(t2)}){lo})"
        nan = f"isnan({lo2}) || " if t2.kind == "f" else ""
        return f"(({nan}{lo2} < {hi}) ? {lo2} : {hi})"


def literal(value: Any, dtype: np.dtype[Any], ctype: str) -> str:
    if dtype.kind == "f" or isinstance(value, float):
        v = float(value)
        if math.isnan(v):
            text = "NAN"
        elif math.isinf(v):
            text = "INFINITY" if v > 0 else "(-INFINITY)"
        else:
            text = repr(v)
        return f"(({ctype}){text})"
    if dtype == np.bool_:
        return "((uchar)1)" if value else "((uchar)0)"
    return f"(({ctype}){int(value)}L)" if int(value) >= 0 else f"(({ctype})({int(value)}L))"


MOD_HELPERS = {
    "float": "inline float wmod_float(float a, float b) { float r = fmod(a, b); "
             "return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r; }\n",
    "double": "inline double wmod_double(double a, double b) { double r = fmod(a, b); "
              "return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r; }\n",
}


def int_mod_helper(ct: str) -> str:
    return (f"inline {ct} wmod_{ct}({ct} a, {ct} b) {{ if (b == 0) return 0; {ct} r = a % b; "
            f"return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r; }}\n")


def source(expr: Expr, in_types: list[np.dtype[Any]], scalar: list[bool],
           out_type: np.dtype[Any], ctype: Any) -> str:
    """OpenCL C of kernel ``ew`` computing ``expr`` into an ``out_type`` buffer."""
    dummies = [np.ones((1,), dtype=t) for t in in_types]
    gen = Codegen(ctype, dummies)
    body = gen.conv(expr, np.dtype(out_type)) if expr[0] != "const" else \
        literal(expr[1], np.dtype(out_type), gen.c(np.dtype(out_type)))
    helpers = "".join(MOD_HELPERS[ct] if ct in MOD_HELPERS else int_mod_helper(ct)
                      for ct in CTYPE_NAMES if f"wmod_{ct}(" in body)
    params = ["__global uchar *out_b", "const long out_o"]
    loads = []
    for k, t in enumerate(in_types):
        ct = gen.c(np.dtype(t))
        params += [f"__global const uchar *in{k}_b", f"const long in{k}_o"]
        index = "0" if scalar[k] else "i"
        pointer = f"((__global const {ct} *)(in{k}_b + in{k}_o))"
        loads.append(f"    const {ct} v{k} = {pointer}[{index}];")
    oct_ = gen.c(np.dtype(out_type))
    return (helpers + f"__kernel void ew({', '.join(params)}, const long n) {{\n"
            "    const long i = get_global_id(0);\n    if (i >= n) return;\n"
            + "\n".join(loads) + "\n"
            f"    ((__global {oct_} *)(out_b + out_o))[i] = {body};\n}}\n")


CTYPE_NAMES = ("char", "uchar", "short", "ushort", "int", "uint", "long", "ulong", "float",
               "double")
