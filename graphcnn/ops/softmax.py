"""softmax and log_softmax along one axis (numerically stable: the max is subtracted first),
and the backward-only helpers their gradients use:

    softmax_grad(g, y)     = y * (g - sum(g * y, axis))      y = softmax(x)
    log_softmax_grad(g, y) = g - exp(y) * sum(g, axis)       y = log_softmax(x)
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.errors import ShapeError
from graphcnn.ir.types import TensorType
from graphcnn.ops.registry import Attr, FusionKind, expect_float, no_second_order, register_op
from graphcnn.ops.shape import normalize_axis


def _canonical_axis(in_types: list[TensorType], attrs: dict[str, Any]) -> dict[str, Any]:
    if in_types[0].ndim == 0:
        raise ShapeError("softmax needs at least a 1-D input, got a scalar")
    return {**attrs, "axis": normalize_axis(attrs["axis"], in_types[0].ndim)}


def softmax_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    expect_float(in_types[0], "input")
    return in_types[0]


def grad_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    g, y = in_types
    expect_float(g, "cotangent")
    if g != y:
        raise ShapeError(f"the cotangent {g} and the output {y} must match")
    return g


def _log_softmax64(x: np.ndarray, axis: int) -> np.ndarray:
    x = x.astype(np.float64)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax_ref(x: np.ndarray, axis: int) -> np.ndarray:
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype)


def log_softmax_ref(x: np.ndarray, axis: int) -> np.ndarray:
    return _log_softmax64(x, axis).astype(x.dtype)


def softmax_grad_ref(g: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    g64, y64 = g.astype(np.float64), y.astype(np.float64)
    return (y64 * (g64 - (g64 * y64).sum(axis=axis, keepdims=True))).astype(g.dtype)


def log_softmax_grad_ref(g: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
    g64 = g.astype(np.float64)
    return (g64 - np.exp(y.astype(np.float64)) * g64.sum(axis=axis, keepdims=True)
            ).astype(g.dtype)


def softmax_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    return [graph.add("softmax_grad", [cot[0], node.output], axis=node.attrs["axis"])]


def log_softmax_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    return [graph.add("log_softmax_grad", [cot[0], node.output], axis=node.attrs["axis"])]


_axis = {"axis": Attr(1, convert=int)}
register_op("softmax", inputs=("x",), shape=softmax_shape, ref=softmax_ref, vjp=softmax_vjp,
            kind=FusionKind.OPAQUE, attrs=_axis, canonicalize=_canonical_axis,
            doc="exp(x) / sum(exp(x), axis), computed as exp(x - max) / sum(exp(x - max)).")
register_op("log_softmax", inputs=("x",), shape=softmax_shape, ref=log_softmax_ref,
            vjp=log_softmax_vjp, kind=FusionKind.OPAQUE, attrs=_axis,
            canonicalize=_canonical_axis,
            doc="x - max - log(sum(exp(x - max), axis)).")
register_op("softmax_grad", inputs=("g", "y"), shape=grad_shape, ref=softmax_grad_ref,
            vjp=no_second_order, kind=FusionKind.OPAQUE, attrs=_axis,
            canonicalize=_canonical_axis,
            doc="y * (g - sum(g * y, axis)), y = softmax(x)")
register_op("log_softmax_grad", inputs=("g", "y"), shape=grad_shape, ref=log_softmax_grad_ref,
            vjp=no_second_order, kind=FusionKind.OPAQUE, attrs=_axis,
            canonicalize=_canonical_axis,
            doc="g - exp(y) * sum(g, axis), y = log_softmax(x)")
