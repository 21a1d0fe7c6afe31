"""Semantic-segmentation metrics on label maps: pixel accuracy, per-class IoU, mIoU, Dice.

Inputs: ``y_true`` is (N, H, W) integer labels in ``[0, num_classes)`` (or
``ignore_index``); ``y_pred`` is (N, H, W) predicted labels or (N, C, H, W) scores
(logits or probabilities, ``C == num_classes``), reduced by ``argmax`` over C.

Conventions (the defaults are torchmetrics' ``MulticlassJaccardIndex(average="macro")``):

- **background**: class 0 is counted like any other class (``include_background=True``);
  with ``include_background=False`` it is left out of the means (its per-class entry is
  still reported).
- **absent classes**: a class found in neither the prediction nor the truth has no IoU or
  Dice (NaN in the per-class arrays) and is left out of the mean; a class present in only
  one of them scores 0.
- **ignore_index**: pixels whose *true* label is ``ignore_index`` are not counted at all;
  if ``ignore_index`` is itself a class (``0 <= ignore_index < num_classes``) that class
  is also left out of the means.
- **averaging**: by default one confusion matrix is accumulated over the whole set and the
  scores computed from it (``per_image=False``). With ``per_image=True`` each image gets
  its own scores (absent classes left out per image) and the image scores are averaged;
  an image where every class is absent is left out.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from graphcnn.metrics.classification import integer_labels

__all__ = ["segmentation_confusion_matrix", "segmentation_metrics", "pixel_accuracy",
           "mean_iou", "dice"]


def _check_classes(num_classes: Any) -> int:
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    return int(num_classes)


def _label_maps(y_true: Any, y_pred: Any, num_classes: int, ignore_index: int | None
                ) -> tuple[np.ndarray, np.ndarray]:
    """(N, H*W) int64 truth and prediction, validated (shapes, label ranges)."""
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.ndim != 3:
        raise ValueError(f"y_true must be (N, H, W) labels, got shape {t.shape}")
    if p.ndim == 4:
        if p.shape[1] != num_classes:
            raise ValueError(f"y_pred scores have {p.shape[1]} channels but num_classes="
                             f"{num_classes} (expected (N, C, H, W) with C = num_classes)")
        p = p.argmax(axis=1)
    if p.shape != t.shape:
        raise ValueError(f"y_pred has shape {np.shape(y_pred)} but y_true has shape "
                         f"{t.shape}: expected (N, H, W) labels or (N, {num_classes}, H, W) "
                         f"scores matching y_true")
    t = integer_labels(t, "y_true").reshape(len(t), -1)
    p = integer_labels(p, "y_pred").reshape(len(p), -1)
    valid = t != ignore_index if ignore_index is not None else np.ones(t.shape, bool)
    bad_t = valid & ((t < 0) | (t >= num_classes))
    if bad_t.any():
        v = int(t[bad_t][0])
        raise ValueError(f"y_true has label {v} outside [0, {num_classes}) (num_classes="
                         f"{num_classes}, ignore_index={ignore_index})")
    bad_p = valid & ((p < 0) | (p >= num_classes))
    if bad_p.any():
        v = int(p[bad_p][0])
        raise ValueError(f"y_pred has label {v} outside [0, {num_classes}) (num_classes="
                         f"{num_classes})")
    return t, p


def _confusions(t: np.ndarray, p: np.ndarray, k: int, ignore_index: int | None
                ) -> np.ndarray:
    """(N, k, k) int64 per-image confusion matrices (rows true, columns predicted)."""
    n = len(t)
    keep = t != ignore_index if ignore_index is not None else np.ones(t.shape, bool)
    code = (np.arange(n)[:, None] * (k * k) + t * k + p)[keep]
    return np.bincount(code, minlength=n * k * k).reshape(n, k, k).astype(np.int64)


def segmentation_confusion_matrix(y_true: Any, y_pred: Any, num_classes: int,
                                  ignore_index: int | None = None,
                                  per_image: bool = False) -> np.ndarray:
    """Pixel counts: entry [i, j] is the number of pixels of true class i predicted as
    class j, over the whole set ((C, C)) or, with ``per_image``, one per image
    ((N, C, C)). Pixels whose true label is ``ignore_index`` are not counted.

    >>> t = np.array([[[0, 1], [1, 1]]]); p = np.array([[[0, 1], [0, 1]]])
    >>> segmentation_confusion_matrix(t, p, num_classes=2).tolist()
    [[1, 0], [1, 2]]
    """
    k = _check_classes(num_classes)
    t, p = _label_maps(y_true, y_pred, k, ignore_index)
    cms = _confusions(t, p, k, ignore_index)
    return cms if per_image else cms.sum(axis=0)


def _scores(cm: np.ndarray, weights: np.ndarray) -> dict[str, Any]:
    """IoU, Dice (per class, NaN where absent) and their weighted means from one matrix."""
    tp = np.diag(cm).astype(np.float64)
    truth = cm.sum(axis=1).astype(np.float64)
    pred = cm.sum(axis=0).astype(np.float64)
    union = truth + pred - tp
    present = union > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(present, tp / union, np.nan)
        dsc = np.where(present, 2 * tp / (truth + pred), np.nan)
    w = weights * present
    total = cm.sum()
    return {"iou": iou, "dice": dsc,
            "mean_iou": float((np.nan_to_num(iou) * w).sum() / w.sum()) if w.sum() else np.nan,
            "mean_dice": float((np.nan_to_num(dsc) * w).sum() / w.sum()) if w.sum() else np.nan,
            "pixel_accuracy": float(tp.sum() / total) if total else np.nan}


def segmentation_metrics(y_true: Any, y_pred: Any, num_classes: int,
                         ignore_index: int | None = None, include_background: bool = True,
                         per_image: bool = False) -> dict[str, Any]:
    """All segmentation scores in one pass (conventions in the module docstring).

    Returns ``pixel_accuracy`` (correct pixels / counted pixels), ``iou`` and ``dice``
    (float64 per-class arrays, NaN for a class absent from both maps), ``mean_iou`` and
    ``mean_dice`` (means over the classes counted), and ``confusion_matrix`` (the
    whole-set (C, C) counts). With ``per_image=True`` the per-class arrays and the four
    scores are means over images (of each image's non-NaN values).

    >>> t = np.array([[[0, 0], [1, 1]]]); p = np.array([[[0, 1], [1, 1]]])
    >>> m = segmentation_metrics(t, p, num_classes=3)
    >>> m["iou"].round(3).tolist()[:2], round(m["mean_iou"], 4), m["pixel_accuracy"]
    ([0.5, 0.667], 0.5833, 0.75)
    """
    k = _check_classes(num_classes)
    t, p = _label_maps(y_true, y_pred, k, ignore_index)
    cms = _confusions(t, p, k, ignore_index)
    weights = np.ones(k)
    if not include_background:
        weights[0] = 0.0
    if ignore_index is not None and 0 <= ignore_index < k:
        weights[ignore_index] = 0.0
    whole = cms.sum(axis=0)
    if not per_image:
        out = _scores(whole, weights)
    else:
        per = [_scores(cm, weights) for cm in cms]
        out = {}
        # An all-NaN column is an answer (a class absent from every image), not a problem.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for key in ("iou", "dice"):
                out[key] = np.nanmean(np.stack([s[key] for s in per]), axis=0)
            for key in ("mean_iou", "mean_dice", "pixel_accuracy"):
                out[key] = float(np.nanmean([s[key] for s in per]))
    out["confusion_matrix"] = whole
    return out


def pixel_accuracy(y_true: Any, y_pred: Any, num_classes: int,
                   ignore_index: int | None = None) -> float:
    """Correctly labelled pixels over counted pixels (``ignore_index`` pixels excluded).

    >>> pixel_accuracy(np.array([[[0, 1]]]), np.array([[[0, 0]]]), num_classes=2)
    0.5
    """
    return float(segmentation_metrics(y_true, y_pred, num_classes, ignore_index)
                 ["pixel_accuracy"])


def mean_iou(y_true: Any, y_pred: Any, num_classes: int, ignore_index: int | None = None,
             include_background: bool = True, per_image: bool = False) -> float:
    """Mean intersection over union (torchmetrics' macro Jaccard index by default).

    >>> mean_iou(np.array([[[0, 1]]]), np.array([[[0, 1]]]), num_classes=4)
    1.0
    """
    return float(segmentation_metrics(y_true, y_pred, num_classes, ignore_index,
                                      include_background, per_image)["mean_iou"])


def dice(y_true: Any, y_pred: Any, num_classes: int, ignore_index: int | None = None,
         include_background: bool = True, per_image: bool = False) -> float:
    """Mean Dice coefficient ``2 tp / (2 tp + fp + fn)`` over the classes counted.

    >>> dice(np.array([[[0, 0, 1, 1]]]), np.array([[[0, 1, 1, 1]]]), num_classes=2)
    0.7333333333333334
    """
    return float(segmentation_metrics(y_true, y_pred, num_classes, ignore_index,
                                      include_background, per_image)["mean_dice"])
