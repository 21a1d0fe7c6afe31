"""Dense-prediction losses: pixel-wise cross-entropy and soft Dice, on (N, C, H, W) logits
(any (N, C, d1, ...) works: the trailing axes are the "pixels") against (N, H, W) int64
class labels.

pixel_cross_entropy is torch.nn.functional.cross_entropy on images, value and gradient:

    nll[n, h, w] = -log_softmax(logits, axis=1)[n, label[n, h, w], h, w]
    mean: sum(weight[label] * nll) / sum(weight[label])   over the pixels not ignored
    sum:  sum(weight[label] * nll)                          over the pixels not ignored

(weight defaults to 1 per class.) Pixels labelled ``ignore_index`` take no part; if every
pixel is ignored, 'mean' is 0/0 = NaN, as PyTorch's.

soft_dice is the soft Dice loss of the softmax probabilities p against the one-hot labels
g, per class over the whole batch (every sample and pixel together), then averaged:

    D_c  = (2 * sum(p_c * g_c) + eps) / (sum(p_c) + sum(g_c) + eps)
    loss = 1 - mean(D_c over the classes counted)

the sums over the pixels not ignored; the classes counted are all C with
``include_background=True`` (the default), else classes 1..C-1 (class 0 is the
background). ``eps`` (default 1.0) keeps a class absent from both the labels and the
prediction at D_c = 1 rather than 0/0.

A label outside [0, C) that is not ``ignore_index`` is an error naming the value (every
backend checks it; none reads out of bounds).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphcnn.errors import ShapeError
from graphcnn.ir.types import TensorType
from graphcnn.ops.loss import _grad_shape, log_softmax_rows, register_loss
from graphcnn.ops.registry import (
    Attr,
    FusionKind,
    expect_float,
    no_second_order,
    register_op,
)


def _reduction(value: Any) -> str:
    if value not in ("mean", "sum"):
        raise ShapeError(f"reduction must be 'mean' or 'sum', got {value!r}")
    return str(value)


def _ignore_index(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ShapeError(f"ignore_index must be an int, got {value!r}")
    return int(value)


def _weight(value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in np.asarray(value, np.float64).reshape(-1))
    except (TypeError, ValueError):
        raise ShapeError(f"weight must be a sequence of floats (one per class) or None, "
                         f"got {value!r}") from None
    if not all(math.isfinite(v) for v in out):
        raise ShapeError(f"weight must be finite, got {out}")
    return out


def _eps(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ShapeError(f"eps must be a number, got {value!r}") from None
    if not (math.isfinite(out) and out >= 0):
        raise ShapeError(f"eps must be finite and >= 0, got {value!r}")
    return out


def _bool(name: str) -> Any:
    def convert(value: Any) -> bool:
        if not isinstance(value, (bool, np.bool_)):
            raise ShapeError(f"{name} must be True or False, got {value!r}")
        return bool(value)
    return convert


_CE_ATTRS = {"ignore_index": Attr(-100, convert=_ignore_index),
             "weight": Attr(None, convert=_weight),
             "reduction": Attr("mean", convert=_reduction)}
_DICE_ATTRS = {"ignore_index": Attr(-100, convert=_ignore_index),
               "eps": Attr(1.0, convert=_eps),
               "include_background": Attr(True, convert=_bool("include_background"))}


def _pixel_shape(op: str) -> Any:
    def shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
        logits, labels = in_types
        expect_float(logits, "logits")
        if logits.ndim < 3:
            raise ShapeError(f"logits must be (N, C, H, W), got shape {logits.shape}")
        want = logits.shape[:1] + logits.shape[2:]
        if labels.dtype != "int64" or labels.shape != want:
            raise ShapeError(f"the labels must be int64 of shape {want} (the logits "
                             f"{logits.shape} without the class axis 1), got "
                             f"{labels.dtype} {labels.shape}")
        classes = logits.shape[1]
        weight = attrs.get("weight")
        if weight is not None and len(weight) != classes:
            raise ShapeError(f"weight has {len(weight)} values but the logits have "
                             f"{classes} classes")
        if op == "soft_dice" and not attrs["include_background"] and classes < 2:
            raise ShapeError("soft_dice with include_background=False needs at least 2 "
                             f"classes, got {classes}")
        return TensorType((), logits.dtype)
    return shape


def check_pixel_labels(op: str, labels: np.ndarray, classes: int, ignore_index: int) -> None:
    """Every label in [0, classes) or equal to ignore_index, else a ValueError naming the
    first bad values (before any kernel indexes with them)."""
    bad = (labels != ignore_index) & ((labels < 0) | (labels >= classes))
    if bad.any():
        values = sorted(set(labels[bad].tolist()))[:5]
        raise ValueError(f"{op}: labels must be in [0, {classes}) or ignore_index "
                         f"({ignore_index}); got {values}")


def as_pixels(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, S) and (N, S) views: the trailing axes flattened into one pixel axis."""
    n, c = logits.shape[:2]
    return logits.reshape(n, c, -1), labels.reshape(n, -1)


def class_weights(weight: tuple[float, ...] | None, classes: int) -> np.ndarray:
    return np.ones(classes) if weight is None else np.asarray(weight, np.float64)


def mean_of_sums(total: float, count: float, dtype: Any, reduction: str) -> Any:
    """The loss from its float64 sums: the total rounded to the loss's dtype first (a sum
    past float32's range is inf, as PyTorch's), then divided by the weight `count` for
    'mean' (0/0 = NaN when every pixel is ignored)."""
    kind = np.dtype(dtype).type
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        rounded = kind(total)
        return rounded / kind(count) if reduction == "mean" else rounded


# ---- pixel_cross_entropy ------------------------------------------------------------------

def _ce_parts(logits: np.ndarray, labels: np.ndarray, ignore_index: int,
              weight: tuple[float, ...] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log_softmax (N, C, S) in float64, the kept-pixel mask (N, S), each pixel's weight."""
    x, t = as_pixels(logits, labels)
    check_pixel_labels("pixel_cross_entropy", t, x.shape[1], ignore_index)
    keep = t != ignore_index
    safe = np.where(keep, t, 0)
    w = np.where(keep, class_weights(weight, x.shape[1])[safe], 0.0)
    return log_softmax_rows(x), keep, w


def pixel_cross_entropy_ref(logits: np.ndarray, labels: np.ndarray, ignore_index: int,
                            weight: tuple[float, ...] | None, reduction: str) -> np.ndarray:
    lsm, keep, w = _ce_parts(logits, labels, ignore_index, weight)
    t = np.where(keep, labels.reshape(keep.shape), 0)
    picked = np.take_along_axis(lsm, t[:, None, :], axis=1)[:, 0, :]
    # ignored pixels are left out (not multiplied by 0: their logits may be NaN); a weight
    # of 0 times an infinite nll is NaN, as PyTorch's
    with np.errstate(invalid="ignore"):
        total = -(w[keep] * picked[keep]).sum()
    return np.asarray(mean_of_sums(total, w.sum(), logits.dtype, reduction), logits.dtype)


def pixel_cross_entropy_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    logits, labels = node.inputs
    grad = graph.add("pixel_cross_entropy_grad", [cot[0], logits, labels], **node.attrs)
    return [grad, None]


def pixel_cross_entropy_grad_ref(g: np.ndarray, logits: np.ndarray, labels: np.ndarray,
                                 ignore_index: int, weight: tuple[float, ...] | None,
                                 reduction: str) -> np.ndarray:
    """(softmax - onehot) * coef per pixel, coef = weight[label] * g / sum(weight) for
    'mean' (g for 'sum') and 0 on ignored pixels: a product, so a NaN logit makes its
    pixel's gradient NaN even where ignored, as PyTorch's log_softmax backward does."""
    lsm, keep, w = _ce_parts(logits, labels, ignore_index, weight)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = float(g) / w.sum() if reduction == "mean" else float(g)
        coef = np.where(keep, w * scale, 0.0)
    grad = np.exp(lsm)
    t = labels.reshape(keep.shape)
    n_idx, s_idx = np.nonzero(keep)
    grad[n_idx, t[keep], s_idx] -= 1.0
    with np.errstate(invalid="ignore"):
        grad *= coef[:, None, :]
    return grad.reshape(logits.shape).astype(logits.dtype)


register_op("pixel_cross_entropy", inputs=("logits", "labels"),
            shape=_pixel_shape("pixel_cross_entropy"), ref=pixel_cross_entropy_ref,
            vjp=pixel_cross_entropy_vjp, kind=FusionKind.OPAQUE, attrs=_CE_ATTRS,
            doc="torch.nn.functional.cross_entropy on (N, C, H, W) logits and (N, H, W) "
                "labels: class weights, ignore_index, mean (weighted) or sum.")
register_op("pixel_cross_entropy_grad", inputs=("g", "logits", "labels"),
            shape=_grad_shape(_pixel_shape("pixel_cross_entropy")),
            ref=pixel_cross_entropy_grad_ref, vjp=no_second_order, kind=FusionKind.OPAQUE,
            attrs=_CE_ATTRS, doc="(softmax(logits) - onehot(labels)) * weight[label] * g / "
                                 "sum(weight) per pixel (0 where ignored).")


# ---- soft_dice ----------------------------------------------------------------------------

def _dice_parts(logits: np.ndarray, labels: np.ndarray, ignore_index: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Softmax (N, C, S) in float64, the one-hot labels (zero on ignored pixels), the kept
    mask (N, S), and the per-class sums (C, 3): sum(p*g), sum(p), sum(g) over kept pixels."""
    x, t = as_pixels(logits, labels)
    classes = x.shape[1]
    check_pixel_labels("soft_dice", t, classes, ignore_index)
    keep = t != ignore_index
    p = np.exp(log_softmax_rows(x))
    onehot = (t[:, None, :] == np.arange(classes)[None, :, None]) & keep[:, None, :]
    kept = np.broadcast_to(keep[:, None, :], p.shape)
    pk = np.where(kept, p, 0.0)    # ignored pixels left out (their p may be NaN)
    sums = np.stack([(pk * onehot).sum(axis=(0, 2)), pk.sum(axis=(0, 2)),
                     onehot.sum(axis=(0, 2)).astype(np.float64)], axis=1)
    return p, onehot, keep, sums


def dice_terms(sums: np.ndarray, eps: float, include_background: bool
               ) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """From the per-class sums (C, 3): D_c, the loss, and the two per-class constants of
    the gradient, A_c = 2 / den_c and B_c = (2 I_c + eps) / den_c^2 (zero for a class not
    counted), den_c = sum(p_c) + sum(g_c) + eps. Every backend's kernels reduce with this
    same formula (on the host for cpu; on the device, written out again, for cuda)."""
    inter, psum, gsum = sums[:, 0], sums[:, 1], sums[:, 2]
    first = 0 if include_background else 1
    counted = len(sums) - first
    with np.errstate(divide="ignore", invalid="ignore"):
        den = psum + gsum + eps
        d = (2 * inter + eps) / den
        a = 2 / den
        b = (2 * inter + eps) / (den * den)
    a[:first] = 0.0
    b[:first] = 0.0
    return d, 1.0 - d[first:].sum() / counted, a / counted, b / counted


def soft_dice_ref(logits: np.ndarray, labels: np.ndarray, ignore_index: int, eps: float,
                  include_background: bool) -> np.ndarray:
    _, _, _, sums = _dice_parts(logits, labels, ignore_index)
    _, loss, _, _ = dice_terms(sums, eps, include_background)
    with np.errstate(over="ignore"):
        return np.asarray(loss, logits.dtype)


def soft_dice_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    logits, labels = node.inputs
    return [graph.add("soft_dice_grad", [cot[0], logits, labels], **node.attrs), None]


def soft_dice_grad_ref(g: np.ndarray, logits: np.ndarray, labels: np.ndarray,
                       ignore_index: int, eps: float, include_background: bool) -> np.ndarray:
    """d loss / d p_c = -g (A_c g_c - B_c) / K at a kept pixel (K the classes counted),
    through the softmax: dx_j = p_j (a_j - sum_c p_c a_c); ignored pixels get 0."""
    p, onehot, keep, sums = _dice_parts(logits, labels, ignore_index)
    _, _, a, b = dice_terms(sums, eps, include_background)
    with np.errstate(invalid="ignore", over="ignore"):
        dp = -float(g) * (a[None, :, None] * onehot - b[None, :, None])
        grad = p * (dp - (p * dp).sum(axis=1, keepdims=True))
    grad = np.where(keep[:, None, :], grad, 0.0)
    return grad.reshape(logits.shape).astype(logits.dtype)


register_op("soft_dice", inputs=("logits", "labels"), shape=_pixel_shape("soft_dice"),
            ref=soft_dice_ref, vjp=soft_dice_vjp, kind=FusionKind.OPAQUE, attrs=_DICE_ATTRS,
            doc="1 - mean_c (2 sum(p_c g_c) + eps) / (sum(p_c) + sum(g_c) + eps), p the "
                "softmax over axis 1, g the one-hot labels, sums over the batch's kept "
                "pixels.")
register_op("soft_dice_grad", inputs=("g", "logits", "labels"),
            shape=_grad_shape(_pixel_shape("soft_dice")), ref=soft_dice_grad_ref,
            vjp=no_second_order, kind=FusionKind.OPAQUE, attrs=_DICE_ATTRS,
            doc="The soft Dice loss's gradient with respect to the logits.")

register_loss("pixel_cross_entropy", "pixel_cross_entropy", "class_index")
register_loss("soft_dice", "soft_dice", "class_index")
