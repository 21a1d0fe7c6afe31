"""(scale * x + shift) ** exponent, constants all three: the power LRN raises its window
sum to (nn.LocalResponseNorm, ONNX LRN: (k + alpha * mean) ** beta). The constants are
attributes, not constant tensors, so a float64 graph computes with alpha and k exactly as
given (a model's constant tensors are recorded in float32).

An elementwise op with a scalar formula, so every backend's code generator compiles it
(and fuses it into a neighbour's loop) from this one registry entry.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.errors import ShapeError
from graphcnn.ops.elementwise import same_as_first
from graphcnn.ops.registry import Attr, FusionKind, register_op


def _finite(value: Any) -> float:
    value = float(value)
    if not np.isfinite(value):
        raise ShapeError(f"pow_scalar exponent must be finite, got {value}")
    return value


def _shift(value: Any) -> float:
    # a zero shift is stored as -0.0: x + -0.0 is x for every x, -0.0 included (x + 0.0
    # would turn -0.0 into 0.0, and (-0.0) ** -3 is -inf in torch, not inf)
    return float(value) or -0.0


def pow_scalar_ref(x: np.ndarray, exponent: float, scale: float, shift: float) -> np.ndarray:
    # in float64 and rounded once, as the kernels (math.pow on a float64 promotion) do;
    # torch.pow computes the exponents 0.5 and -0.5 as sqrt and rsqrt, whose -inf is NaN
    # where C's pow gives inf or 0: so does this op, in the reference and the formula
    base = x.astype(np.float64) * scale + shift
    with np.errstate(all="ignore"):   # 0 ** -b = inf and (-x) ** 0.5 = NaN, as torch.pow
        if exponent == 0.5:
            y = np.sqrt(base)
        elif exponent == -0.5:
            y = 1.0 / np.sqrt(base)
        else:
            y = np.power(base, exponent)
        return y.astype(x.dtype)


def pow_scalar_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    # d (a x + b)**p / dx = a p (a x + b)**(p - 1); p = 0 is a constant: gradient 0
    x, a = node.inputs[0], node.attrs
    p = a["exponent"]
    if p == 0.0 or a["scale"] == 0.0:
        return [graph.add("mul", [cot[0], graph.constant(np.zeros((), x.dtype))])]
    slope = graph.add("pow_scalar", [x], exponent=p - 1.0, scale=a["scale"], shift=a["shift"])
    factor = graph.constant(np.asarray(p * a["scale"], dtype=x.dtype))
    return [graph.add("mul", [cot[0], graph.add("mul", [slope, factor])])]


register_op("pow_scalar", inputs=("x",), shape=same_as_first, ref=pow_scalar_ref,
            vjp=pow_scalar_vjp, kind=FusionKind.ELEMWISE,
            attrs={"exponent": Attr(convert=_finite), "scale": Attr(1.0, convert=float),
                   "shift": Attr(-0.0, convert=_shift)},
            doc="(scale * x + shift) ** exponent, constants all three (NaN for a negative "
                "base and a fractional exponent, inf for 0 ** negative, as torch.pow).",
            scalar="(math.sqrt({0} * {scale} + {shift}) if {exponent} == 0.5 else "
                   "(1.0 / math.sqrt({0} * {scale} + {shift}) if {exponent} == -0.5 else "
                   "math.pow({0} * {scale} + {shift}, {exponent})))")
