"""Box-regression losses: L1 (``torch.nn.functional.l1_loss``) and smooth L1
(``torch.nn.functional.smooth_l1_loss``, with ``beta``), reduced to a scalar with
reduction='mean' (PyTorch's default) or 'sum'.

Per element, with ``x = prediction - target``::

    l1         |x|
    smooth_l1  0.5 x^2 / beta   if |x| < beta
               |x| - 0.5 beta   otherwise           (beta = 0 is l1)

Gradients are PyTorch's, also where it matters at the edges: l1's gradient at x = 0 is 0
(``sign(0) = 0``), and so is its gradient at a NaN difference (PyTorch's l1 backward gives
0 there; smooth L1 with beta > 0 gives NaN, as PyTorch).

Masking (``ignore_nan=True``, not in PyTorch): a detector regresses boxes only at the
cells that hold an object, and one target array per output has to say which cells those
are. With ``ignore_nan=True`` an element whose *target* is NaN is left out: it adds nothing
to the loss or to either gradient, and reduction='mean' divides by the number of elements
counted (the loss is 0 when none is: a batch without objects is no error). A NaN in the
*prediction* still makes the loss NaN, as without the option. With the default
``ignore_nan=False`` a NaN target makes the loss NaN, as in PyTorch.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.errors import ShapeError
from graphcnn.ops.loss import _grad_shape, _reduction_attr, batch_total, mse_shape, register_loss
from graphcnn.ops.registry import Attr, FusionKind, no_second_order, register_op


def _beta(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not (np.isfinite(value) and value >= 0):
        raise ShapeError(f"beta must be a finite number >= 0, got {value!r}")
    return float(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ShapeError(f"ignore_nan must be True or False, got {value!r}")
    return bool(value)


_L1_ATTRS = dict(_reduction_attr, ignore_nan=Attr(False, convert=_flag))
_SMOOTH_ATTRS = dict(_L1_ATTRS, beta=Attr(1.0, convert=_beta))


def _parts(pred: np.ndarray, target: np.ndarray, ignore_nan: bool
           ) -> tuple[np.ndarray, np.ndarray, int]:
    """(x = prediction - target in float64, counted elements (bool), their number)."""
    x = pred.astype(np.float64) - target.astype(np.float64)
    counted = ~np.isnan(target) if ignore_nan else np.ones(x.shape, bool)
    return x, counted, int(counted.sum())


def smooth_l1_terms(x: np.ndarray, beta: float) -> np.ndarray:
    """The per-element loss of differences `x` (float64): beta = 0 is |x|. A NaN
    difference gives NaN (|x| < beta is false for it)."""
    a = np.abs(x)
    if beta == 0:
        return a
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(a < beta, 0.5 * x * x / beta, a - 0.5 * beta)


def smooth_l1_slope(x: np.ndarray, beta: float) -> np.ndarray:
    """d(term)/dx as PyTorch's backward: x / beta inside (-beta, beta), else sign(x) with
    sign(0) = 0; beta = 0 is l1's sign(x), 0 also at a NaN difference (as PyTorch)."""
    sign = (x > 0).astype(np.float64) - (x < 0)
    if beta == 0:
        return sign
    with np.errstate(invalid="ignore"):
        return np.where(np.abs(x) < beta, x / beta, np.where(np.isnan(x), np.nan, sign))


def _loss_value(total: float, dtype: Any, count: int, reduction: str) -> np.ndarray:
    if count == 0:   # every target ignored: nothing to fit
        return np.asarray(0.0, dtype)
    return np.asarray(batch_total(total, dtype, count, reduction), dtype)


def smooth_l1_ref(pred: np.ndarray, target: np.ndarray, reduction: str, beta: float = 0.0,
                  ignore_nan: bool = False) -> np.ndarray:
    x, counted, count = _parts(pred, target, ignore_nan)
    terms = smooth_l1_terms(x, beta)
    return _loss_value(float(np.sum(terms[counted])), pred.dtype, count, reduction)


def l1_ref(pred: np.ndarray, target: np.ndarray, reduction: str,
           ignore_nan: bool = False) -> np.ndarray:
    return smooth_l1_ref(pred, target, reduction, 0.0, ignore_nan)


def smooth_l1_grad_ref(g: np.ndarray, pred: np.ndarray, target: np.ndarray, reduction: str,
                       beta: float = 0.0, ignore_nan: bool = False) -> np.ndarray:
    x, counted, count = _parts(pred, target, ignore_nan)
    scale = np.float64(g) / max(count, 1) if reduction == "mean" else np.float64(g)
    with np.errstate(invalid="ignore"):
        grad = np.where(counted, smooth_l1_slope(x, beta) * scale, 0.0)
    return grad.astype(pred.dtype)


def _vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    """Both inputs: the target's gradient is the prediction's negated."""
    pred, target = node.inputs
    attrs = node.attrs
    grad = graph.add("smooth_l1_grad", [cot[0], pred, target], reduction=attrs["reduction"],
                     beta=attrs.get("beta", 0.0), ignore_nan=attrs["ignore_nan"])
    neg = graph.add("mul", [grad, graph.constant(np.asarray(-1.0, dtype=pred.dtype))])
    return [grad, neg]


register_op("l1", inputs=("prediction", "target"), shape=mse_shape, ref=l1_ref, vjp=_vjp,
            kind=FusionKind.OPAQUE, attrs=_L1_ATTRS,
            doc="mean(|prediction - target|) (or the sum); ignore_nan leaves out NaN targets.")
register_op("smooth_l1", inputs=("prediction", "target"), shape=mse_shape, ref=smooth_l1_ref,
            vjp=_vjp, kind=FusionKind.OPAQUE, attrs=_SMOOTH_ATTRS,
            doc="PyTorch's smooth_l1_loss(beta): 0.5 x^2/beta for |x| < beta, else "
                "|x| - 0.5 beta; ignore_nan leaves out NaN targets.")
# l1's gradient is smooth_l1's with beta = 0: one gradient op (and kernel) for both.
register_op("smooth_l1_grad", inputs=("g", "prediction", "target"),
            shape=_grad_shape(mse_shape), ref=smooth_l1_grad_ref, vjp=no_second_order,
            kind=FusionKind.OPAQUE, attrs=dict(_SMOOTH_ATTRS, beta=Attr(0.0, convert=_beta)),
            doc="g * d smooth_l1 / d prediction (beta = 0: l1's sign(x), sign(0) = 0)")

register_loss("l1", "l1", "like")
register_loss("smooth_l1", "smooth_l1", "like")
