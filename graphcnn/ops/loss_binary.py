"""Binary cross-entropy with logits, as torch.nn.functional.binary_cross_entropy_with_logits.

Per element, for a logit x and a target y in [0, 1] (soft targets allowed, e.g. label
smoothing's 0.9):

    without pos_weight:  l = (1 - y) x - log_sigmoid(x)
                           = (1 - y) x - min(x, 0) + log1p(exp(-|x|))
    with pos_weight p:   l = (1 - y) x + (1 + (p - 1) y) (max(-x, 0) + log1p(exp(-|x|)))

both stable for every finite x (no exp of a positive number), and the two forms PyTorch
uses: they agree on finite inputs and give PyTorch's NaN / Inf on special ones (x = -inf
with y = 0 is NaN in both, as 0 * inf is). The loss is the mean (PyTorch's default) or
the sum over every element.

`pos_weight` is None, a float, or a tuple of floats broadcast against the target as
PyTorch broadcasts its tensor: NumPy-style, along the LAST axis (its length must be 1 or
the last axis's size). For (N, C) logits that is one weight per class; for image-shaped
targets (N, C, H, W) PyTorch would need a (C, 1, 1) tensor, which this attribute does
not take (a tuple is always the last axis).

Gradients (PyTorch's):
    d l / d x = (1 + (p - 1) y) sigmoid(x) - p y     (= sigmoid(x) - y without pos_weight)
    d l / d y = -x + (p - 1) (max(-x, 0) + log1p(exp(-|x|)))   (= -x without pos_weight)
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.errors import ShapeError
from graphcnn.ir.types import TensorType
from graphcnn.ops.loss import _grad_shape, _reduction, batch_total, register_loss
from graphcnn.ops.registry import Attr, FusionKind, expect_float, no_second_order, register_op


def _pos_weight(value: Any) -> tuple[float, ...] | None:
    """None, or the weights as a tuple of floats (a float is a 1-tuple: it broadcasts)."""
    if value is None:
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return (float(value),)
    try:
        out = tuple(float(v) for v in np.asarray(value, dtype=np.float64).reshape(-1))
    except (TypeError, ValueError):
        raise ShapeError(f"pos_weight must be None, a float or a sequence of floats, "
                         f"got {value!r}") from None
    if not out:
        raise ShapeError("pos_weight must not be empty")
    return out


def _wrt(value: Any) -> str:
    if value not in ("input", "target"):
        raise ShapeError(f"wrt must be 'input' or 'target', got {value!r}")
    return value


_ATTRS = {"reduction": Attr("mean", convert=_reduction),
          "pos_weight": Attr(None, convert=_pos_weight)}


def bce_with_logits_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    logits, target = in_types
    expect_float(logits, "logits")
    if logits != target:
        raise ShapeError(f"bce_with_logits: logits {logits} and target {target} must have "
                         f"the same shape and dtype (targets are floats in [0, 1])")
    weights = attrs["pos_weight"]
    if weights is not None and len(weights) != 1:
        last = logits.shape[-1] if logits.shape else 1
        if len(weights) != last:
            raise ShapeError(f"bce_with_logits: pos_weight has {len(weights)} weights; it "
                             f"broadcasts along the last axis of the logits {logits.shape}, "
                             f"so it needs 1 or {last}")
    return TensorType((), logits.dtype)


def _weights_along_last(weights: tuple[float, ...], shape: tuple[int, ...]) -> np.ndarray:
    return np.asarray(weights, np.float64).reshape((1,) * max(len(shape) - 1, 0) + (-1,))


def softplus_neg(x: np.ndarray) -> np.ndarray:
    """-log_sigmoid(x) = max(-x, 0) + log1p(exp(-|x|)), stable."""
    return np.maximum(-x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def bce_with_logits_elements(x: np.ndarray, y: np.ndarray,
                             pos_weight: tuple[float, ...] | None) -> np.ndarray:
    """The per-element losses in float64 (PyTorch's reduction='none')."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        if pos_weight is None:
            return (1 - y) * x - np.minimum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))
        p = _weights_along_last(pos_weight, x.shape)
        return (1 - y) * x + (1 + (p - 1) * y) * softplus_neg(x)


def bce_with_logits_ref(logits: np.ndarray, target: np.ndarray, reduction: str,
                        pos_weight: tuple[float, ...] | None) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        total = bce_with_logits_elements(logits, target, pos_weight).sum()
    return np.asarray(batch_total(total, logits.dtype, logits.size, reduction), logits.dtype)


def bce_with_logits_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    logits, target = node.inputs
    attrs = dict(node.attrs)
    return [graph.add("bce_with_logits_grad", [cot[0], logits, target], wrt="input", **attrs),
            graph.add("bce_with_logits_grad", [cot[0], logits, target], wrt="target", **attrs)]


def sigmoid64(x: np.ndarray) -> np.ndarray:
    """The logistic function, stable on both sides (exp of a non-positive number only)."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def bce_with_logits_grad_ref(g: np.ndarray, logits: np.ndarray, target: np.ndarray,
                             reduction: str, pos_weight: tuple[float, ...] | None,
                             wrt: str) -> np.ndarray:
    x, y = logits.astype(np.float64), target.astype(np.float64)
    scale = float(g) / x.size if reduction == "mean" and x.size else float(g)
    with np.errstate(invalid="ignore", over="ignore"):
        if wrt == "input":
            if pos_weight is None:
                d = sigmoid64(x) - y
            else:
                p = _weights_along_last(pos_weight, x.shape)
                d = (1 + (p - 1) * y) * sigmoid64(x) - p * y
        elif pos_weight is None:
            d = -x
        else:
            p = _weights_along_last(pos_weight, x.shape)
            d = -x + (p - 1) * softplus_neg(x)
        return (d * scale).astype(logits.dtype)


register_op("bce_with_logits", inputs=("logits", "target"), shape=bce_with_logits_shape,
            ref=bce_with_logits_ref, vjp=bce_with_logits_vjp, kind=FusionKind.OPAQUE,
            attrs=_ATTRS,
            doc="Binary cross-entropy of sigmoid(logits) against float targets in [0, 1] "
                "(pos_weight weighs the positive term), mean or sum over every element.")
register_op("bce_with_logits_grad", inputs=("g", "logits", "target"),
            shape=_grad_shape(bce_with_logits_shape), ref=bce_with_logits_grad_ref,
            vjp=no_second_order, kind=FusionKind.OPAQUE,
            attrs=dict(_ATTRS, wrt=Attr("input", convert=_wrt)),
            doc="The gradient of bce_with_logits with respect to its logits (wrt='input': "
                "g ((1 + (p - 1) y) sigmoid(x) - p y) / size) or its target (wrt='target').")
register_loss("bce_with_logits", "bce_with_logits", "like")
