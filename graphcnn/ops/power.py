"""x ** exponent for a constant exponent: the power LRN raises its window sum to
(nn.LocalResponseNorm, ONNX LRN), and the power a model's ONNX Pow by a constant means.

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


def pow_scalar_ref(x: np.ndarray, exponent: float) -> np.ndarray:
    # in float64 and rounded once, as the kernels (math.pow on a float64 promotion) do
    with np.errstate(all="ignore"):   # 0 ** -b = inf and (-x) ** 0.5 = NaN, as torch.pow
        return np.power(x.astype(np.float64), exponent).astype(x.dtype)


def pow_scalar_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    # d x**p / dx = p * x**(p - 1); p = 0 is a constant, whose gradient is 0 (not 0 * inf)
    x, p = node.inputs[0], node.attrs["exponent"]
    if p == 0.0:
        return [graph.add("mul", [cot[0], graph.constant(np.zeros((), x.dtype))])]
    slope = graph.add("pow_scalar", [x], exponent=p - 1.0)
    scaled = graph.add("mul", [slope, graph.constant(np.asarray(p, dtype=x.dtype))])
    return [graph.add("mul", [cot[0], scaled])]


register_op("pow_scalar", inputs=("x",), shape=same_as_first, ref=pow_scalar_ref,
            vjp=pow_scalar_vjp, kind=FusionKind.ELEMWISE,
            attrs={"exponent": Attr(convert=_finite)},
            doc="x ** exponent, a constant exponent (NaN for a negative x and a fractional "
                "exponent, inf for 0 ** negative, as torch.pow).",
            scalar="math.pow({0}, {exponent})")
