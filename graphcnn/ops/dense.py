"""Dense layers: linear (x @ W.T + b, PyTorch layout) and the matmul its gradients use."""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.errors import ShapeError
from graphcnn.ir.types import TensorType
from graphcnn.ops.registry import Attr, FusionKind, expect_float, expect_ndim, register_op


def linear_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    x, w = in_types[0], in_types[1]
    expect_float(x, "input")
    expect_ndim(x, 2, "linear input", "batch, features; flatten first")
    expect_ndim(w, 2, "linear weight", "out_features, in_features")
    if x.shape[1] != w.shape[1]:
        raise ShapeError(
            f"input has {x.shape[1]} features but the weight expects in_features={w.shape[1]} "
            f"(weight shape {w.shape})")
    if len(in_types) == 3 and in_types[2].shape != (w.shape[0],):
        raise ShapeError(f"bias must have shape ({w.shape[0]},), got {in_types[2].shape}")
    return TensorType((x.shape[0], w.shape[0]), x.dtype)


def linear_ref(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    y = x @ w.T
    if b is not None:
        y = y + b
    return y.astype(x.dtype)


def linear_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    g = cot[0]
    x, w = node.inputs[0], node.inputs[1]
    grads = [graph.add("matmul", [g, w]),                      # (N,out) @ (out,in)
             graph.add("matmul", [g, x], trans_a=True)]        # (out,N) @ (N,in)
    if len(node.inputs) == 3:
        grads.append(graph.add("sum_to", [g], shape=node.inputs[2].shape))
    return grads


register_op("linear", inputs=("x", "weight", "bias?"), shape=linear_shape, ref=linear_ref,
            vjp=linear_vjp, kind=FusionKind.OUT_ELEMWISE_FUSABLE,
            doc="y = x @ weight.T + bias; weight is (out_features, in_features) as in torch.")


def _operand(shape: tuple[int, ...], transposed: bool) -> tuple[int, int]:
    return (shape[1], shape[0]) if transposed else (shape[0], shape[1])


def matmul_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    a, b = in_types
    expect_ndim(a, 2, "matmul a")
    expect_ndim(b, 2, "matmul b")
    if a.dtype != b.dtype:
        raise ShapeError(f"dtypes differ: {a.dtype} and {b.dtype}")
    m, k = _operand(a.shape, attrs["trans_a"])
    k2, n = _operand(b.shape, attrs["trans_b"])
    if k != k2:
        raise ShapeError(f"inner dimensions differ: {k} and {k2} "
                         f"(trans_a={attrs['trans_a']}, trans_b={attrs['trans_b']})")
    return TensorType((m, n), a.dtype)


def matmul_ref(a: np.ndarray, b: np.ndarray, trans_a: bool, trans_b: bool) -> np.ndarray:
    return ((a.T if trans_a else a) @ (b.T if trans_b else b)).astype(a.dtype)


def matmul_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    g = cot[0]
    a, b = node.inputs
    ta, tb = node.attrs["trans_a"], node.attrs["trans_b"]
    mm = lambda p, q, tp, tq: graph.add("matmul", [p, q], trans_a=tp, trans_b=tq)  # noqa: E731
    if not ta and not tb:
        return [mm(g, b, False, True), mm(a, g, True, False)]
    if not ta and tb:
        return [mm(g, b, False, False), mm(g, a, True, False)]
    if ta and not tb:
        return [mm(b, g, False, True), mm(a, g, False, False)]
    return [mm(b, g, True, True), mm(g, a, True, True)]


register_op("matmul", inputs=("a", "b"), shape=matmul_shape, ref=matmul_ref,
            vjp=matmul_vjp, kind=FusionKind.OUT_ELEMWISE_FUSABLE,
            attrs={"trans_a": Attr(False, convert=bool), "trans_b": Attr(False, convert=bool)},
            doc="op(a) @ op(b) for 2-D operands, op = transpose where asked.")
