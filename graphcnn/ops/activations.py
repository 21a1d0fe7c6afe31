"""Unary math (abs, neg, exp, log, sqrt, reciprocal, erf) and the smooth activations
(elu/selu, softplus, softsign, gelu, mish), each with PyTorch's values and gradients.

Every op here is ELEMWISE with a `scalar` formula, so the cpu and cuda code generators
fuse it like relu (backends/lowering.py). NaN goes through every formula as NaN (a
comparison with NaN is false, so each select falls to a branch that computes with it);
infinities give what NumPy and PyTorch give (exp(-inf) = 0, log(0) = -inf, sqrt(-1) =
nan, elu(-inf) = -alpha, softplus(inf) = inf).

Gradients are graph ops where the derivative is a product of values already computed
(exp: g * y), so they differentiate again; the activations' derivatives are one helper op
each (`<op>_grad(g, x)`, linear in g).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphcnn.ops.elementwise import _scalar, same_as_first
from graphcnn.ops.registry import Attr, FusionKind, no_second_order, register_op

_SQRT1_2 = 1.0 / math.sqrt(2.0)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_K = math.sqrt(2.0 / math.pi)        # gelu's tanh approximation: tanh(k (x + c x^3))
_GELU_C = 0.044715
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _erf(x: np.ndarray) -> np.ndarray:
    """erf elementwise with libm's erf (NumPy has none; scipy is not a dependency)."""
    x = np.asarray(x)
    return np.vectorize(math.erf, otypes=[x.dtype])(x) if x.size else x.copy()


# The references compute in float64 and round once to the input's dtype: the formulas'
# float literals make the compiled kernels compute in float64 too, so an intermediate
# such as x^3 in gelu_tanh or (1 + |x|)^2 in softsign's gradient overflows in neither
# (a float32 reference would make 0 * inf = NaN of them at |x| = 3e38).
def _typed(fn: Any) -> Any:
    def ref(x: np.ndarray, **attrs: Any) -> np.ndarray:
        with np.errstate(all="ignore"):   # log(0), sqrt(-1), 1/0: inf and NaN, as NumPy says
            return np.asarray(fn(x.astype(np.float64), **attrs)).astype(x.dtype)
    return ref


def _grad_ref(fn: Any) -> Any:
    def ref(g: np.ndarray, x: np.ndarray, **attrs: Any) -> np.ndarray:
        with np.errstate(all="ignore"):
            g64 = g.astype(np.float64)
            return np.asarray(g64 * fn(x.astype(np.float64), **attrs)).astype(g.dtype)
    return ref


def _unary(name: str, ref: Any, vjp: Any, scalar: str, doc: str = "",
           attrs: dict[str, Attr] | None = None) -> None:
    register_op(name, inputs=("x",), shape=same_as_first, ref=_typed(ref), vjp=vjp,
                kind=FusionKind.ELEMWISE, attrs=attrs, doc=doc, scalar=scalar)


def _grad_op(name: str, derivative: Any, scalar: str, doc: str,
             attrs: dict[str, Attr] | None = None) -> None:
    """`name(g, x) = g * derivative(x)`: the backward helper of an activation."""
    register_op(name, inputs=("g", "x"), shape=same_as_first, ref=_grad_ref(derivative),
                vjp=no_second_order, kind=FusionKind.ELEMWISE, attrs=attrs, doc=doc,
                scalar=scalar)


def _via_grad_op(grad_op: str) -> Any:
    def vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
        return [graph.add(grad_op, [cot[0], node.inputs[0]], **node.attrs)]
    return vjp


# ---- unary math ----------------------------------------------------------------------

def _sign(x: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(x), 0.0, np.sign(x))   # PyTorch's abs backward: 0 at NaN


def abs_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    return [graph.add("abs_grad", [cot[0], node.inputs[0]])]


def abs_grad_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    # linear in g; sign(x) is flat wherever it has a derivative
    return [graph.add("abs_grad", [cot[0], node.inputs[1]]), None]


_unary("abs", np.abs, abs_vjp, "abs({0})")
# g * sign(x), sign 0 at x = 0 and at x = NaN, as PyTorch's abs backward
register_op("abs_grad", inputs=("g", "x"), shape=same_as_first, ref=_grad_ref(_sign),
            vjp=abs_grad_vjp, kind=FusionKind.ELEMWISE, doc="g * sign(x)",
            scalar="({0} if {1} > 0 else (-{0} if {1} < 0 else {0} * 0.0))")


def neg_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    return [graph.add("neg", [cot[0]])]


_unary("neg", np.negative, neg_vjp, "(-{0})")


def exp_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    return [graph.add("mul", [cot[0], node.output])]


_unary("exp", np.exp, exp_vjp, "math.exp({0})")


def log_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    return [graph.add("div", [cot[0], node.inputs[0]])]


# math.log raises on 0 and negatives in Python; compiled (Numba, CUDA) it is libm's log:
# -inf at 0, NaN below, as np.log
_unary("log", np.log, log_vjp, "math.log({0})")


def sqrt_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    y = node.output
    return [graph.add("div", [graph.add("mul", [cot[0], _scalar(graph, 0.5, y)]), y])]


_unary("sqrt", np.sqrt, sqrt_vjp, "math.sqrt({0})")


def reciprocal_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    y = node.output   # d(1/x) = -1/x^2 = -y^2
    return [graph.add("mul", [graph.add("neg", [cot[0]]), graph.add("mul", [y, y])])]


_unary("reciprocal", np.reciprocal, reciprocal_vjp, "(1.0 / {0})")


def erf_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    # 2/sqrt(pi) exp(-x^2), from ops that differentiate again
    x = node.inputs[0]
    bell = graph.add("exp", [graph.add("mul", [graph.add("neg", [x]), x])])
    return [graph.add("mul", [cot[0],
                              graph.add("mul", [bell, _scalar(graph, _TWO_OVER_SQRT_PI, x)])])]


_unary("erf", _erf, erf_vjp, "math.erf({0})")


# ---- elu and selu ----------------------------------------------------------------------

def elu_ref(x: np.ndarray, alpha: float, scale: float) -> np.ndarray:
    return scale * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def elu_derivative(x: np.ndarray, alpha: float, scale: float) -> np.ndarray:
    # `x <= 0`, as PyTorch's elu_backward: where x is NaN the slope is `scale`
    return scale * np.where(x <= 0, alpha * np.exp(np.minimum(x, 0)), 1.0)


_elu_attrs = {"alpha": Attr(1.0, convert=float), "scale": Attr(1.0, convert=float)}
_unary("elu", elu_ref, _via_grad_op("elu_grad"),
       "({scale} * {0} if {0} > 0 else {scale} * {alpha} * math.expm1({0}))",
       doc="scale * (x if x > 0 else alpha * (exp(x) - 1)); SELU is scale=1.0507, "
           "alpha=1.6733", attrs=_elu_attrs)
_grad_op("elu_grad", elu_derivative,
         "({0} * ({scale} * {alpha}) * math.exp({1}) if {1} <= 0 else {0} * {scale})",
         "g * d elu(x) / dx", attrs=_elu_attrs)


# ---- softplus and softsign ---------------------------------------------------------------

def softplus_ref(x: np.ndarray, beta: float, threshold: float) -> np.ndarray:
    bx = x * beta
    smooth = (np.maximum(bx, 0) + np.log1p(np.exp(-np.abs(bx)))) / beta
    return np.where(bx > threshold, x, smooth)


def softplus_derivative(x: np.ndarray, beta: float, threshold: float) -> np.ndarray:
    bx = x * beta
    return np.where(bx > threshold, 1.0, 1.0 / (1.0 + np.exp(-bx)))


_softplus_attrs = {"beta": Attr(1.0, convert=float), "threshold": Attr(20.0, convert=float)}
# PyTorch's: x where beta * x > threshold, else log(1 + exp(beta x)) / beta, written as
# max(bx, 0) + log1p(exp(-|bx|)) so that exp never overflows (a threshold of inf, as ONNX
# has, still gives x for large x)
_unary("softplus", softplus_ref, _via_grad_op("softplus_grad"),
       "({0} if {0} * {beta} > {threshold} else "
       "(({0} * {beta} if {0} * {beta} > 0 else 0.0) "
       "+ math.log1p(math.exp(-abs({0} * {beta})))) / {beta})",
       doc="log(1 + exp(beta x)) / beta; x where beta x > threshold", attrs=_softplus_attrs)
# sigmoid(bx) as 1 / (1 + exp(-bx)): exp(-bx) = inf gives 0, the limit
_grad_op("softplus_grad", softplus_derivative,
         "({0} if {1} * {beta} > {threshold} else {0} / (1.0 + math.exp(-{1} * {beta})))",
         "g * sigmoid(beta x) (g where beta x > threshold)", attrs=_softplus_attrs)


def softsign_ref(x: np.ndarray) -> np.ndarray:
    return x / (1 + np.abs(x))


def softsign_derivative(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.abs(x)) ** 2


_unary("softsign", softsign_ref, _via_grad_op("softsign_grad"), "({0} / (1.0 + abs({0})))",
       doc="x / (1 + |x|)")
_grad_op("softsign_grad", softsign_derivative,
         "({0} / ((1.0 + abs({1})) * (1.0 + abs({1}))))", "g / (1 + |x|)^2")


# ---- gelu ----------------------------------------------------------------------------------

def gelu_ref(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + _erf(x * _SQRT1_2))


def gelu_derivative(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + _erf(x * _SQRT1_2)) + x * _INV_SQRT_2PI * np.exp(-0.5 * x * x)


def gelu_tanh_ref(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(_GELU_K * (x + _GELU_C * x * x * x)))


def gelu_tanh_derivative(x: np.ndarray) -> np.ndarray:
    t = np.tanh(_GELU_K * (x + _GELU_C * x * x * x))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _GELU_K * (1 + 3 * _GELU_C * x * x)


_unary("gelu", gelu_ref, _via_grad_op("gelu_grad"),
       f"(0.5 * {{0}} * (1.0 + math.erf({{0}} * {_SQRT1_2!r})))",
       doc="x * Phi(x), Phi the standard normal CDF (approximate='none')")
_grad_op("gelu_grad", gelu_derivative,
         f"({{0}} * (0.5 * (1.0 + math.erf({{1}} * {_SQRT1_2!r})) "
         f"+ {{1}} * {_INV_SQRT_2PI!r} * math.exp(-0.5 * {{1}} * {{1}})))",
         "g * (Phi(x) + x phi(x))")
_TANH_ARG = f"({_GELU_K!r} * ({{1}} + {_GELU_C!r} * {{1}} * {{1}} * {{1}}))"
_unary("gelu_tanh", gelu_tanh_ref, _via_grad_op("gelu_tanh_grad"),
       "(0.5 * {0} * (1.0 + math.tanh(" + _TANH_ARG.replace("{1}", "{0}") + ")))",
       doc="0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (approximate='tanh')")
_grad_op("gelu_tanh_grad", gelu_tanh_derivative,
         # t appears three times; LLVM computes the tanh once (common subexpression)
         f"({{0}} * (0.5 * (1.0 + math.tanh({_TANH_ARG})) + 0.5 * {{1}} "
         f"* (1.0 - math.tanh({_TANH_ARG}) * math.tanh({_TANH_ARG})) "
         f"* {_GELU_K!r} * (1.0 + {3 * _GELU_C!r} * {{1}} * {{1}})))",
         "g * d gelu_tanh(x) / dx")


# ---- mish ----------------------------------------------------------------------------------

def mish_ref(x: np.ndarray) -> np.ndarray:
    return x * np.tanh(softplus_ref(x, 1.0, np.inf))


def mish_derivative(x: np.ndarray) -> np.ndarray:
    t = np.tanh(softplus_ref(x, 1.0, np.inf))
    return t + x * (1 - t * t) / (1 + np.exp(-x))


_SOFTPLUS1 = "(({1} if {1} > 0 else 0.0) + math.log1p(math.exp(-abs({1}))))"
_unary("mish", mish_ref, _via_grad_op("mish_grad"),
       "({0} * math.tanh(" + _SOFTPLUS1.replace("{1}", "{0}") + "))",
       doc="x * tanh(softplus(x))")
_grad_op("mish_grad", mish_derivative,
         f"({{0}} * (math.tanh({_SOFTPLUS1}) + {{1}} * (1.0 - math.tanh({_SOFTPLUS1}) "
         f"* math.tanh({_SOFTPLUS1})) / (1.0 + math.exp(-{{1}}))))",
         "g * (t + x (1 - t^2) sigmoid(x)), t = tanh(softplus(x))")
