"""Losses: cross-entropy from logits (numerically stable) and mean squared error.
Both reduce to a scalar with reduction='mean' (PyTorch's default) or 'sum'."""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from graphcnn.errors import ShapeError
from graphcnn.ir.types import TensorType
from graphcnn.ops.registry import (
    Attr,
    FusionKind,
    expect_float,
    expect_ndim,
    no_second_order,
    register_op,
)


def _reduction(value: Any) -> str:
    if value not in ("mean", "sum"):
        raise ShapeError(f"reduction must be 'mean' or 'sum', got {value!r}")
    return value


_reduction_attr = {"reduction": Attr("mean", convert=_reduction)}
ShapeFn = Callable[[list[TensorType], dict[str, Any]], TensorType]


def _grad_shape(loss_shape: ShapeFn) -> ShapeFn:
    """The shape function of a loss gradient (g, a, b): g the scalar cotangent, (a, b) what
    loss_shape accepts; the gradient is a's."""
    def shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
        g, a, b = in_types
        if g.shape != ():
            raise ShapeError(f"the loss cotangent must be a scalar, got {g.shape}")
        loss_shape([a, b], attrs)
        return a
    return shape


def cross_entropy_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    logits, labels = in_types
    expect_float(logits, "logits")
    expect_ndim(logits, 2, "logits", "batch, classes")
    if labels.dtype != "int64" or labels.shape != (logits.shape[0],):
        raise ShapeError(f"labels must be int64 of shape ({logits.shape[0]},), got {labels}")
    return TensorType((), logits.dtype)


def log_softmax_rows(logits: np.ndarray) -> np.ndarray:
    """log_softmax along axis 1, in float64 (stable for every finite input: the max is
    subtracted first; NaN in a row makes the row NaN, as an Inf with anything but -Inf)."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def batch_total(total: float, dtype: Any, count: int, reduction: str) -> Any:
    """A loss from its float64 sum over the batch, as PyTorch's float32 loss: the sum
    rounded to the loss's dtype first (a sum past float32's range is inf, as a float32
    accumulation makes it), then divided by `count` for reduction='mean'. Every backend
    reduces its losses with this."""
    with np.errstate(over="ignore"):
        rounded = np.dtype(dtype).type(total)
    return rounded / np.dtype(dtype).type(count) if reduction == "mean" else rounded


def cross_entropy_ref(logits: np.ndarray, labels: np.ndarray, reduction: str) -> np.ndarray:
    picked = log_softmax_rows(logits)[np.arange(len(labels)), labels]
    total = batch_total(-picked.sum(), logits.dtype, len(labels), reduction)
    return np.asarray(total, logits.dtype)


def cross_entropy_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    logits, labels = node.inputs
    grad = graph.add("cross_entropy_grad", [cot[0], logits, labels],
                     reduction=node.attrs["reduction"])
    return [grad, None]


def cross_entropy_grad_ref(g: np.ndarray, logits: np.ndarray, labels: np.ndarray,
                           reduction: str) -> np.ndarray:
    probs = np.exp(log_softmax_rows(logits))
    probs[np.arange(len(labels)), labels] -= 1
    scale = g / len(labels) if reduction == "mean" else g
    return (probs * scale).astype(logits.dtype)


register_op("cross_entropy", inputs=("logits", "labels"), shape=cross_entropy_shape,
            ref=cross_entropy_ref, vjp=cross_entropy_vjp, kind=FusionKind.OPAQUE,
            attrs=_reduction_attr,
            doc="-log softmax(logits)[label], averaged (or summed) over the batch.")
register_op("cross_entropy_grad", inputs=("g", "logits", "labels"),
            shape=_grad_shape(cross_entropy_shape), ref=cross_entropy_grad_ref,
            vjp=no_second_order, kind=FusionKind.OPAQUE, attrs=_reduction_attr,
            doc="g * (softmax(logits) - onehot(labels)) / N for reduction='mean'.")


def mse_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    pred, target = in_types
    expect_float(pred, "prediction")
    if pred != target:
        raise ShapeError(f"prediction {pred} and target {target} must match")
    return TensorType((), pred.dtype)


def mse_ref(pred: np.ndarray, target: np.ndarray, reduction: str) -> np.ndarray:
    total = np.sum((pred.astype(np.float64) - target) ** 2)
    return np.asarray(batch_total(total, pred.dtype, pred.size, reduction), pred.dtype)


def mse_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    pred, target = node.inputs
    grad = graph.add("mse_grad", [cot[0], pred, target], reduction=node.attrs["reduction"])
    neg = graph.add("mul", [grad, graph.constant(np.asarray(-1.0, dtype=pred.dtype))])
    return [grad, neg]


def mse_grad_ref(g: np.ndarray, pred: np.ndarray, target: np.ndarray,
                 reduction: str) -> np.ndarray:
    scale = 2 * g / pred.size if reduction == "mean" else 2 * g
    return ((pred - target) * scale).astype(pred.dtype)


register_op("mse", inputs=("prediction", "target"), shape=mse_shape, ref=mse_ref,
            vjp=mse_vjp, kind=FusionKind.OPAQUE, attrs=_reduction_attr,
            doc="mean((prediction - target)^2) (or the sum).")
register_op("mse_grad", inputs=("g", "prediction", "target"), shape=_grad_shape(mse_shape),
            ref=mse_grad_ref, vjp=no_second_order, kind=FusionKind.OPAQUE,
            attrs=_reduction_attr, doc="2 g (prediction - target) / size")


# ---- the loss table: what a training step can be asked for by name -------------------------

class LossEntry(NamedTuple):
    """A loss by name: the graph op that computes it from (prediction, target), and the
    target it takes: "class_index" (int64 class indices, the prediction's shape without
    its axis 1: (N,) for (N, C) logits, (N, H, W) for (N, C, H, W)) or "like" (float, the
    prediction's shape)."""
    op: str
    target: str


LOSSES: dict[str, LossEntry] = {}
TARGET_KINDS = ("class_index", "like")


def register_loss(name: str, op: str, target: str) -> None:
    """Make loss op `op` trainable by name (gc.Trainer(loss=name), value_and_grad)."""
    if target not in TARGET_KINDS:
        raise ValueError(f"target must be one of {TARGET_KINDS}, got {target!r}")
    LOSSES[name] = LossEntry(op, target)


register_loss("cross_entropy", "cross_entropy", "class_index")
register_loss("mse", "mse", "like")
