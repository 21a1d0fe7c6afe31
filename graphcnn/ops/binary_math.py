"""Broadcasting pow, maximum and minimum, with PyTorch's gradients (ONNX Pow, and the
variadic Max/Min/Sum/Mean, which the importer lowers to chains of binary ops).

BROADCAST ops with a scalar formula, fused by the code generators like add and mul.
maximum and minimum propagate NaN from either side (np.maximum, torch.maximum)."""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.ir.types import TensorType
from graphcnn.ops.elementwise import _reduce_to, _scalar, binary_shape
from graphcnn.ops.registry import FusionKind, broadcast_shapes, no_second_order, register_op


def _typed(fn: Any) -> Any:
    def ref(*arrays: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):   # 0 ** -1 = inf, (-8) ** 0.5 = nan, as NumPy says
            return np.asarray(fn(*arrays)).astype(arrays[0].dtype)
    return ref


def three_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    """The gradient helpers' (g, a, b): the broadcast of all three."""
    shape = in_types[0].shape
    for t in in_types[1:]:
        shape = broadcast_shapes(shape, t.shape)
    return TensorType(shape, in_types[0].dtype)


# ---- pow ---------------------------------------------------------------------------------

def pow_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    # d/da = b a^(b-1) (pow again, so it differentiates again); d/db = y log(a)
    a, b = node.inputs
    lower = graph.add("pow", [a, graph.add("sub", [b, _scalar(graph, 1.0, b)])])
    ga = graph.add("mul", [cot[0], graph.add("mul", [b, lower])])
    gb = graph.add("pow_exponent_grad", [cot[0], a, node.output])
    return [_reduce_to(graph, ga, a), _reduce_to(graph, gb, b)]


def pow_exponent_grad_ref(g: np.ndarray, a: np.ndarray, y: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        out = np.where((a == 0) & (y <= 1), 0.0, g * y * np.log(a))
    return np.asarray(out).astype(g.dtype)


register_op("pow", inputs=("a", "b"), shape=binary_shape, ref=_typed(np.power), vjp=pow_vjp,
            kind=FusionKind.BROADCAST, doc="a ** b (NaN for a negative a and a fractional b)",
            # math.pow compiles to libm's pow: no Python exceptions at 0 ** -1 or (-8) ** 0.5
            scalar="math.pow({0}, {1})")
# PyTorch masks the exponent's gradient to 0 where a == 0 and b >= 0 (y is 0 or 1 there),
# where y log(a) would be 0 * -inf
register_op("pow_exponent_grad", inputs=("g", "a", "y"), shape=three_shape,
            ref=pow_exponent_grad_ref, vjp=no_second_order, kind=FusionKind.BROADCAST,
            doc="g * y * log(a), y = a ** b; 0 where a == 0 and b >= 0",
            scalar="(0.0 if {1} == 0.0 and {2} <= 1.0 else {0} * {2} * math.log({1}))")


# ---- maximum and minimum ---------------------------------------------------------------

def _extremum_vjp(grad_op: str) -> Any:
    def vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
        a, b = node.inputs
        return [_reduce_to(graph, graph.add(grad_op, [cot[0], a, b]), a),
                _reduce_to(graph, graph.add(grad_op, [cot[0], b, a]), b)]
    return vjp


def _extremum_grad_ref(loses: Any) -> Any:
    def ref(g: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = np.where(loses(a, b), 0.0, np.where(a == b, 0.5 * g, g))
        return np.asarray(np.broadcast_to(out, np.broadcast_shapes(g.shape, a.shape, b.shape))
                          ).astype(g.dtype)
    return ref


# NaN-propagating selects: a when a wins or is NaN, else b (NaN when b is)
register_op("maximum", inputs=("a", "b"), shape=binary_shape, ref=_typed(np.maximum),
            vjp=_extremum_vjp("maximum_grad"), kind=FusionKind.BROADCAST,
            scalar="({0} if ({0} > {1} or {0} != {0}) else {1})")
register_op("minimum", inputs=("a", "b"), shape=binary_shape, ref=_typed(np.minimum),
            vjp=_extremum_vjp("minimum_grad"), kind=FusionKind.BROADCAST,
            scalar="({0} if ({0} < {1} or {0} != {0}) else {1})")
# PyTorch's: the larger side takes g, a tie splits it in halves; where either side is NaN
# no comparison holds, so both take g
register_op("maximum_grad", inputs=("g", "a", "b"), shape=three_shape,
            ref=_extremum_grad_ref(np.less), vjp=no_second_order, kind=FusionKind.BROADCAST,
            doc="g where a > b, g/2 where a == b, else 0 (the gradient of a in max(a, b))",
            scalar="(0.0 if {1} < {2} else (0.5 * {0} if {1} == {2} else {0}))")
register_op("minimum_grad", inputs=("g", "a", "b"), shape=three_shape,
            ref=_extremum_grad_ref(np.greater), vjp=no_second_order,
            kind=FusionKind.BROADCAST,
            doc="g where a < b, g/2 where a == b, else 0 (the gradient of a in min(a, b))",
            scalar="(0.0 if {1} > {2} else (0.5 * {0} if {1} == {2} else {0}))")
