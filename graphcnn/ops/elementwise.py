"""Elementwise activations, broadcasting arithmetic, and the reductions their
gradients need (sum_to, broadcast_to)."""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.errors import ShapeError
from graphcnn.ir.types import TensorType
from graphcnn.ops.registry import Attr, FusionKind, broadcast_shapes, expect_float, register_op


def same_as_first(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    expect_float(in_types[0], "input")
    for t in in_types[1:]:
        if t.shape != in_types[0].shape:
            raise ShapeError(f"all inputs must have shape {in_types[0].shape}, got {t.shape}")
    return in_types[0]


def _scalar(graph: Any, value: float, like: Any) -> Any:
    return graph.constant(np.asarray(value, dtype=like.dtype))


# ---- activations ---------------------------------------------------------------------

def relu_ref(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0).astype(x.dtype)


def relu_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    # The mask is read off the output, as PyTorch does: y > 0 exactly where x > 0, and y is
    # NaN exactly where x is. The input then has no reader in the backward pass, so it
    # need not be kept, and whatever made it can take the relu as its epilogue (a
    # conv2d's, a batch_norm_train's: passes/fusion.py, passes/bn_train_activation.py).
    return [graph.add("relu_grad", [cot[0], node.outputs[0]])]


def relu_grad_ref(g: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0, 0, g).astype(g.dtype)  # NaN x passes g, as in PyTorch


def relu_grad_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    return [graph.add("relu_grad", [cot[0], node.inputs[1]]), None]


# `x <= 0`, not `x > 0`: a comparison with NaN is false, so relu(NaN) is NaN (as in
# PyTorch and np.maximum) and relu_grad passes g where x is NaN (PyTorch's
# threshold_backward); -0.0 still becomes 0.0. A select either way, which vectorizes.
register_op("relu", inputs=("x",), shape=same_as_first, ref=relu_ref, vjp=relu_vjp,
            kind=FusionKind.ELEMWISE,
            scalar='(0.0 if {0} <= 0 else {0})')
register_op("relu_grad", inputs=("g", "x"), shape=same_as_first, ref=relu_grad_ref,
            vjp=relu_grad_vjp, kind=FusionKind.ELEMWISE, doc="g * (x > 0)",
            scalar='(0.0 if {1} <= 0 else {0})')


def leaky_relu_ref(x: np.ndarray, alpha: float) -> np.ndarray:
    return np.where(x > 0, x, x * alpha).astype(x.dtype)


def leaky_relu_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    return [graph.add("leaky_relu_grad", [cot[0], node.inputs[0]], alpha=node.attrs["alpha"])]


def leaky_relu_grad_ref(g: np.ndarray, x: np.ndarray, alpha: float) -> np.ndarray:
    return np.where(x > 0, g, g * alpha).astype(g.dtype)


def leaky_relu_grad_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    return [graph.add("leaky_relu_grad", [cot[0], node.inputs[1]], alpha=node.attrs["alpha"]),
            None]


_alpha = {"alpha": Attr(0.01, convert=float)}
register_op("leaky_relu", inputs=("x",), shape=same_as_first, ref=leaky_relu_ref,
            vjp=leaky_relu_vjp, kind=FusionKind.ELEMWISE, attrs=_alpha,
            scalar='({0} if {0} > 0 else {0} * {alpha})')
register_op("leaky_relu_grad", inputs=("g", "x"), shape=same_as_first,
            ref=leaky_relu_grad_ref, vjp=leaky_relu_grad_vjp, kind=FusionKind.ELEMWISE,
            attrs=_alpha,
            scalar='({0} if {1} > 0 else {0} * {alpha})')


def sigmoid_ref(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))  # never overflows: stable for large |x|
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype)


def sigmoid_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    return [graph.add("sigmoid_grad", [cot[0], node.output])]


def sigmoid_grad_ref(g: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (g * y * (1 - y)).astype(g.dtype)


def sigmoid_grad_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    # d/dg = c*y*(1-y); d/dy = c*g*(1-2y)
    c, (g, y) = cot[0], node.inputs
    one_minus_2y = graph.add("sub", [_scalar(graph, 1.0, y),
                                     graph.add("mul", [_scalar(graph, 2.0, y), y])])
    return [graph.add("sigmoid_grad", [c, y]),
            graph.add("mul", [graph.add("mul", [c, g]), one_minus_2y])]


register_op("sigmoid", inputs=("x",), shape=same_as_first, ref=sigmoid_ref,
            vjp=sigmoid_vjp, kind=FusionKind.ELEMWISE,
            scalar="(1.0 / (1.0 + math.exp(-{0})) if {0} >= 0 "
                   "else math.exp({0}) / (1.0 + math.exp({0})))")
register_op("sigmoid_grad", inputs=("g", "y"), shape=same_as_first, ref=sigmoid_grad_ref,
            vjp=sigmoid_grad_vjp, kind=FusionKind.ELEMWISE, doc="g * y * (1 - y), y = sigmoid(x)",
            scalar='({0} * {1} * (1.0 - {1}))')


def tanh_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    return [graph.add("tanh_grad", [cot[0], node.output])]


def tanh_grad_ref(g: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (g * (1 - y * y)).astype(g.dtype)


def tanh_grad_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    # d/dg = c*(1-y^2); d/dy = -2*c*g*y
    c, (g, y) = cot[0], node.inputs
    cgy = graph.add("mul", [graph.add("mul", [c, g]), y])
    return [graph.add("tanh_grad", [c, y]), graph.add("mul", [_scalar(graph, -2.0, y), cgy])]


register_op("tanh", inputs=("x",), shape=same_as_first, ref=np.tanh, vjp=tanh_vjp,
            kind=FusionKind.ELEMWISE,
            scalar='math.tanh({0})')
register_op("tanh_grad", inputs=("g", "y"), shape=same_as_first, ref=tanh_grad_ref,
            vjp=tanh_grad_vjp, kind=FusionKind.ELEMWISE, doc="g * (1 - y^2), y = tanh(x)",
            scalar='({0} * (1.0 - {1} * {1}))')


def clip_ref(x: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.clip(x, low, high).astype(x.dtype)


def clip_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    return [clip_grad_of_output(graph, cot[0], node.outputs[0], node.attrs)]


def clip_grad_of_output(graph: Any, g: Any, y: Any, attrs: dict[str, Any]) -> Any:
    """The gradient g through y = clip(x, low, high), its mask read off y, as relu's: low <
    y < high exactly where low < x < high, and y is NaN exactly where x is (0 there). The
    bounds are rounded to y's dtype first: clip writes them rounded (0.7 as float32 is
    0.69999999), and a float64 0.7 compared with that would pass g where x was clipped."""
    low, high = (float(np.asarray(attrs[k]).astype(y.dtype)) for k in ("low", "high"))
    return graph.add("clip_grad", [g, y], low=low, high=high)


def clip_grad_ref(g: np.ndarray, x: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.where((x > low) & (x < high), g, 0).astype(g.dtype)


def clip_grad_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    a = node.attrs
    return [graph.add("clip_grad", [cot[0], node.inputs[1]], low=a["low"], high=a["high"]),
            None]


_bounds = {"low": Attr(convert=float), "high": Attr(convert=float)}
register_op("clip", inputs=("x",), shape=same_as_first, ref=clip_ref, vjp=clip_vjp,
            kind=FusionKind.ELEMWISE, attrs=_bounds, doc="min(max(x, low), high); ReLU6",
            # Selects, not min/max: Numba's NaN-aware min/max stop LLVM vectorizing (2.3x
            # slower epilogues); this form keeps NaN as NaN, as np.clip does.
            scalar='({low} if {0} < {low} else ({high} if {0} > {high} else {0}))')
register_op("clip_grad", inputs=("g", "x"), shape=same_as_first, ref=clip_grad_ref,
            vjp=clip_grad_vjp, kind=FusionKind.ELEMWISE, attrs=_bounds,
            scalar='({0} if {low} < {1} < {high} else 0.0)')


# ---- broadcasting arithmetic ----------------------------------------------------------

def binary_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    a, b = in_types
    if a.dtype != b.dtype:
        raise ShapeError(f"dtypes differ: {a.dtype} and {b.dtype}")
    return TensorType(broadcast_shapes(a.shape, b.shape), a.dtype)


def _reduce_to(graph: Any, g: Any, like: Any) -> Any:
    """The cotangent of a broadcast input: sum over the axes it was broadcast along."""
    if g.shape == like.shape:
        return g
    return graph.add("sum_to", [g], shape=like.shape)


def add_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    a, b = node.inputs
    return [_reduce_to(graph, cot[0], a), _reduce_to(graph, cot[0], b)]


def sub_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    a, b = node.inputs
    neg = graph.add("mul", [cot[0], _scalar(graph, -1.0, cot[0])])
    return [_reduce_to(graph, cot[0], a), _reduce_to(graph, neg, b)]


def mul_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    a, b = node.inputs
    return [_reduce_to(graph, graph.add("mul", [cot[0], b]), a),
            _reduce_to(graph, graph.add("mul", [cot[0], a]), b)]


def div_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    # d(a/b)/da = 1/b; d(a/b)/db = -(a/b)/b
    a, b = node.inputs
    ga = graph.add("div", [cot[0], b])
    gb = graph.add("mul", [ga, graph.add("mul", [node.output, _scalar(graph, -1.0, b)])])
    return [_reduce_to(graph, ga, a), _reduce_to(graph, gb, b)]


def _typed(fn: Any) -> Any:
    def ref(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.asarray(fn(a, b)).astype(a.dtype)
    return ref


register_op("add", inputs=("a", "b"), shape=binary_shape, ref=_typed(np.add), vjp=add_vjp,
            kind=FusionKind.BROADCAST,
            scalar='({0} + {1})')
register_op("sub", inputs=("a", "b"), shape=binary_shape, ref=_typed(np.subtract),
            vjp=sub_vjp, kind=FusionKind.BROADCAST,
            scalar='({0} - {1})')
register_op("mul", inputs=("a", "b"), shape=binary_shape, ref=_typed(np.multiply),
            vjp=mul_vjp, kind=FusionKind.BROADCAST,
            scalar='({0} * {1})')
register_op("div", inputs=("a", "b"), shape=binary_shape, ref=_typed(np.divide),
            vjp=div_vjp, kind=FusionKind.BROADCAST,
            scalar='({0} / {1})')


# ---- the reductions and expansions broadcasting needs --------------------------------

def _shape_attr(value: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in value)


def _reduced_axes(src: tuple[int, ...], dst: tuple[int, ...]) -> tuple[int, ...]:
    """Axes of `src` that are summed to make `dst` (NumPy broadcasting in reverse)."""
    lead = len(src) - len(dst)
    if lead < 0:
        raise ShapeError(f"cannot reduce shape {src} to the longer shape {dst}")
    axes = list(range(lead))
    for i, d in enumerate(dst):
        s = src[lead + i]
        if d == 1 and s != 1:
            axes.append(lead + i)
        elif d != s:
            raise ShapeError(f"cannot reduce shape {src} to {dst}")
    return tuple(axes)


def sum_to_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    _reduced_axes(in_types[0].shape, attrs["shape"])
    return TensorType(attrs["shape"], in_types[0].dtype)


def sum_to_ref(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    axes = _reduced_axes(x.shape, shape)
    return np.sum(x, axis=axes).reshape(shape).astype(x.dtype)


def sum_to_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    return [graph.add("broadcast_to", [cot[0]], shape=node.inputs[0].shape)]


def broadcast_to_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    _reduced_axes(attrs["shape"], in_types[0].shape)
    return TensorType(attrs["shape"], in_types[0].dtype)


def broadcast_to_ref(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.broadcast_to(x, shape).copy()


def broadcast_to_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    return [graph.add("sum_to", [cot[0]], shape=node.inputs[0].shape)]


register_op("sum_to", inputs=("x",), shape=sum_to_shape, ref=sum_to_ref, vjp=sum_to_vjp,
            kind=FusionKind.REDUCTION, attrs={"shape": Attr(convert=_shape_attr)},
            doc="Sum x over the axes along which `shape` was broadcast to x's shape.")
register_op("broadcast_to", inputs=("x",), shape=broadcast_to_shape, ref=broadcast_to_ref,
            vjp=broadcast_to_vjp, kind=FusionKind.BROADCAST,
            attrs={"shape": Attr(convert=_shape_attr)})
