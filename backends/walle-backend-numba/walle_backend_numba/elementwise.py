"""Fused Elementwise: one generated numba kernel per expression tree, input dtypes and layout.

The expression tree becomes straight-line scalar code inside one loop, so a chain such as
``sigmoid(x * a + b) * y`` reads each input once and writes the output once. Types follow
the reference exactly: each node's dtype is found by evaluating the tree with numpy on tiny
samples (numpy's own promotion rules, Python constants weak), and the generated code casts
operands to that dtype before each operation. Layout: every buffer is flat and contiguous;
an input with one element (while the output has more) is read once as a scalar. Anything
outside the vocabulary below raises :class:`Unsupported` and the step runs on numpy instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

from walle_backend_numba.codecache import load_source
from walle_backend_numba.jit import PARALLEL_MIN
from walle_core.ir.primitives import Expr
from walle_core.runtime import numpy_kernels as nk

KERNEL_DTYPES = frozenset({"float32", "float64", "int32", "int64", "bool"})
FLOAT = frozenset({"float32", "float64"})

_ARITH = {"add": "+", "sub": "-", "mul": "*"}
_COMPARE = {"eq": "==", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_FLOAT_UNARY = {"exp": "np.exp", "log": "np.log", "sqrt": "np.sqrt", "sin": "np.sin",
                "cos": "np.cos", "tan": "np.tan", "asin": "np.arcsin", "acos": "np.arccos",
                "atan": "np.arctan", "sinh": "np.sinh", "cosh": "np.cosh", "tanh": "np.tanh",
                "asinh": "np.arcsinh", "acosh": "np.arccosh", "atanh": "np.arctanh",
                "floor": "np.floor", "ceil": "np.ceil", "round": "np.rint"}


class Unsupported(Exception):
    """The expression uses something the generator does not emit; run it on numpy."""


class _Gen:
    """Walks the tree once, emitting one temporary per node plus hoisted constants."""

    def __init__(self, in_dtypes: list[np.dtype[Any]], scalar: list[bool]) -> None:
        self.samples = [np.ones((), d) if s else np.ones(2, d)
                        for d, s in zip(in_dtypes, scalar, strict=True)]
        self.scalar = scalar
        self.body: list[str] = []
        self.consts: list[str] = []
        self.used: set[int] = set()

    def temp(self, code: str) -> str:
        name = f"t{len(self.body)}"
        self.body.append(f"{name} = {code}")
        return name

    def const(self, value: Any, dtype: np.dtype[Any]) -> str:
        name = f"C{len(self.consts)}"
        if dtype.kind == "f":
            text = f"np.{dtype.name}(float.fromhex({float(value).hex()!r}))"
        elif dtype.kind == "b":
            text = repr(bool(value))
        else:
            text = f"np.{dtype.name}({int(value)})"
        self.consts.append(f"{name} = {text}")
        return name

    def cast(self, node: tuple[str, Any], dtype: np.dtype[Any]) -> str:
        code, sample = node
        if not isinstance(sample, np.ndarray):  # a constant: materialise it in the target type
            return self.const(sample, dtype)
        src = sample.dtype
        if src == dtype:
            return code
        if dtype.kind == "b":
            return f"({code} != 0)"
        if src.kind == "b":
            return f"(np.{dtype.name}(1) if {code} else np.{dtype.name}(0))"
        return f"np.{dtype.name}({code})"

    def visit(self, expr: Expr) -> tuple[str, Any]:
        head = expr[0]
        if head == "in":
            k = expr[1]
            self.used.add(k)
            return (f"s{k}" if self.scalar[k] else f"x{k}[i]"), self.samples[k]
        if head == "const":
            if not isinstance(expr[1], (bool, int, float, np.generic)):
                raise Unsupported("non-scalar constant")
            return repr(expr[1]), expr[1]
        kids = [self.visit(e) for e in expr[1:]]
        sample = self.sample(head, [s for _, s in kids])
        dtype = sample.dtype
        if dtype.name not in KERNEL_DTYPES:
            raise Unsupported(f"{head} yields {dtype}")
        return self.temp(self.emit(head, kids, dtype)), sample

    def sample(self, head: str, samples: list[Any]) -> np.ndarray:
        probe: Expr = (head, *[("const", s) if not isinstance(s, np.ndarray) else ("in", i)
                               for i, s in enumerate(samples)])
        with np.errstate(all="ignore"):
            return np.asarray(nk.evaluate(probe, samples, (2,)))

    def emit(self, head: str, kids: list[tuple[str, Any]], dtype: np.dtype[Any]) -> str:
        samples = [s for _, s in kids]
        for s in samples:
            if isinstance(s, np.ndarray) and s.dtype.name not in KERNEL_DTYPES:
                raise Unsupported(f"operand dtype {s.dtype}")
        if head in _ARITH or head in ("div", "max", "min", "pow"):
            opd = np.result_type(*samples)
            a, b = (self.cast(k, opd) for k in kids)
            return self.binary(head, a, b, opd, dtype)
        if head in _COMPARE:
            opd = np.result_type(*samples)
            a, b = (self.cast(k, opd) for k in kids)
            return f"({a} {_COMPARE[head]} {b})"
        if head in ("and", "or", "xor"):
            a, b = (self.cast(k, np.dtype(bool)) for k in kids)
            op = {"and": "&", "or": "|", "xor": "!="}[head]
            return f"({a} {op} {b})"
        if head in ("bitand", "bitor", "bitxor") and dtype.kind in "ib":
            a, b = (self.cast(k, dtype) for k in kids)
            return f"({a} {dict(bitand='&', bitor='|', bitxor='^')[head]} {b})"
        if head == "where":
            c = self.cast(kids[0], np.dtype(bool))
            a, b = (self.cast(k, dtype) for k in kids[1:])
            return f"({a} if {c} else {b})"
        if head == "clip":
            opd = np.result_type(*samples)
            x, lo, hi = (self.cast(k, opd) for k in kids)
            return self.cast((f"ewh.fmin(ewh.fmax({x}, {lo}), {hi})", np.ones(1, opd)), dtype)
        if len(kids) == 1:
            return self.unary(head, kids[0], dtype)
        raise Unsupported(head)

    def binary(self, head: str, a: str, b: str, opd: np.dtype[Any], dtype: np.dtype[Any]) -> str:
        if head in _ARITH:
            code = f"({a} {_ARITH[head]} {b})"
        elif head == "div":
            code = f"({a} / {b})" if opd.kind == "f" else f"ewh.idiv({a}, {b})"
        elif head in ("max", "min"):
            code = f"ewh.f{head}({a}, {b})" if opd.kind == "f" else f"{head}({a}, {b})"
        elif opd.kind == "f":  # pow
            code = f"np.power({a}, {b})"
        else:
            code = f"np.power(np.float64({a}), np.float64({b}))"
            return f"np.{dtype.name}({code})"
        return self.cast((code, np.ones(1, opd)), dtype) if opd != dtype else code

    def unary(self, head: str, kid: tuple[str, Any], dtype: np.dtype[Any]) -> str:
        src = kid[1].dtype if isinstance(kid[1], np.ndarray) else None
        if head in ("isnan", "isinf", "isposinf", "isneginf", "not"):
            if src is None or src.kind not in "fb" and head != "not":
                raise Unsupported(head)
            a = kid[0]
            return {"isnan": f"np.isnan({a})", "isinf": f"np.isinf({a})",
                    "isposinf": f"({a} == np.inf)", "isneginf": f"({a} == -np.inf)",
                    "not": f"({a} == 0)"}[head]
        a = self.cast(kid, dtype)
        if head == "identity":
            return a
        if head == "neg" and dtype.kind != "b":
            return f"(-{a})"
        if head == "abs" and dtype.kind != "b":
            return f"abs({a})"
        if head == "relu" and dtype.kind != "b":
            return f"({a} if not ({a} < 0) else {self.const(0, dtype)})"
        if head == "sign" and dtype.kind != "b":
            one = self.const(1, dtype)
            return f"({one} if {a} > 0 else (-{one} if {a} < 0 else {a}))"
        if head == "bitnot" and dtype.kind == "i":
            return f"(~{a})"
        if dtype.kind != "f":
            raise Unsupported(f"{head} on {dtype}")
        one = self.const(1.0, dtype)
        if head == "softplus":
            return f"ewh.softplus({a}, {self.const(0.0, dtype)})"
        if head in _FLOAT_UNARY:
            return f"{_FLOAT_UNARY[head]}({a})"
        if head == "reciprocal":
            return f"({one} / {a})"
        if head == "sigmoid":
            return f"({one} / ({one} + np.exp(-{a})))"
        if head == "softsign":
            return f"({a} / ({one} + abs({a})))"
        if head == "erf":
            return f"ewh.erf32({a})" if dtype.name == "float32" else f"math.erf({a})"
        raise Unsupported(head)


def generate(expr: Expr, in_dtypes: list[np.dtype[Any]], scalar: list[bool],
             out_dtype: np.dtype[Any]) -> str:
    """Source of a module defining ``seq(out, x0, x1, ...)`` and its parallel twin ``par``."""
    if out_dtype.name not in KERNEL_DTYPES:
        raise Unsupported(f"output dtype {out_dtype}")
    gen = _Gen(in_dtypes, scalar)
    root = gen.visit(expr)
    store = gen.cast(root, out_dtype) if isinstance(root[1], np.ndarray) else \
        gen.const(root[1], out_dtype)
    args = ", ".join(["out"] + [f"x{k}" for k in range(len(in_dtypes))])
    hoist = [f"    s{k} = x{k}[0]" for k in sorted(gen.used) if scalar[k]]
    body = [f"        {line}" for line in gen.body] + [f"        out[i] = {store}"]
    lines = ['"""Generated by walle_backend_numba.elementwise; safe to delete."""',
             f"# helpers {HELPERS_DIGEST}",
             "import math", "import numba", "import numpy as np",
             "from walle_backend_numba import ewhelpers as ewh", "", *gen.consts, ""]
    for name, rng, par in (("seq", "range", False), ("par", "numba.prange", True)):
        lines += [f"@numba.njit(cache=True, parallel={par}, error_model='numpy', "
                  "fastmath={'contract'})",
                  f"def {name}({args}):", *hoist, f"    for i in {rng}(out.shape[0]):", *body, ""]
    return "\n".join(lines)


_compiled: dict[str, Any] = {}


def _helpers_digest() -> str:
    # numba's cache of a generated kernel does not notice edits to the helpers it calls; the
    # helpers' hash in the generated source changes the file (and the cache key) instead.
    from walle_backend_numba import ewhelpers

    with open(ewhelpers.__file__, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


HELPERS_DIGEST = _helpers_digest()


def build(expr: Expr, in_arrays_dtypes: list[np.dtype[Any]], scalar: list[bool],
          out_dtype: np.dtype[Any], size: int) -> Callable[..., None]:
    """The compiled kernel for this expression (seq or par by ``size``)."""
    source = generate(expr, in_arrays_dtypes, scalar, out_dtype)
    key = hashlib.sha256(source.encode()).hexdigest()
    if key not in _compiled:
        _compiled[key] = load_source(source)
    module = _compiled[key]
    import numba

    parallel = size >= PARALLEL_MIN and numba.get_num_threads() > 1
    return module.par if parallel else module.seq  # type: ignore[no-any-return]
