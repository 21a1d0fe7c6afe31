"""Classification metrics in vectorized NumPy (``gc.metrics``; re-exported there).

Labels are integers ``0 .. num_classes - 1``. Where a function takes ``y_pred`` it may
be labels or, for classification, a 2-D array of scores (logits or probabilities, one
row per sample), which is reduced to labels by ``argmax`` over the last axis.

``num_classes=None`` means ``max(label) + 1`` over both arrays, so the matrices and
per-class arrays are indexed by the label itself. (scikit-learn instead uses the sorted
set of labels present; the two agree when every class up to the largest occurs, and
passing ``labels=range(num_classes)`` to scikit-learn gives exactly these numbers.)

Divisions by zero give 0, as scikit-learn's ``zero_division=0``: the precision of a class
never predicted, the recall of a class absent from ``y_true``. Macro averages are plain
means over all `num_classes` classes; weighted averages weight each class by its support.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["accuracy", "top_k_accuracy", "confusion_matrix", "precision_recall_f1", "iou"]


def _labels(y: Any, what: str, scores_ok: bool = True) -> np.ndarray:
    """1-D int64 labels from labels or (scores_ok) a 2-D array of per-class scores."""
    a = np.asarray(y)
    if scores_ok and a.ndim == 2:
        if a.shape[1] == 0:
            raise ValueError(f"{what}: a score array needs at least one column")
        return a.argmax(axis=1).astype(np.int64)
    if a.ndim != 1:
        a = a.reshape(-1)
    return integer_labels(a, what)


def integer_labels(a: np.ndarray, what: str) -> np.ndarray:
    """`a` as int64 labels: bools and integral floats converted, anything else refused."""
    if a.dtype.kind == "b":
        return a.astype(np.int64)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"{what}: labels must be integers, got non-integral floats")
        return a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{what}: labels must be integers, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def _pair(y_true: Any, y_pred: Any, scores_ok: bool = True) -> tuple[np.ndarray, np.ndarray]:
    t = _labels(y_true, "y_true", scores_ok)
    p = _labels(y_pred, "y_pred", scores_ok)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    return t, p


def _num_classes(t: np.ndarray, p: np.ndarray, num_classes: int | None) -> int:
    for a, what in ((t, "y_true"), (p, "y_pred")):
        if a.size and a.min() < 0:
            raise ValueError(f"{what} has negative labels ({int(a.min())})")
    largest = max(int(t.max()) if t.size else -1, int(p.max()) if p.size else -1)
    if num_classes is None:
        return largest + 1
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if largest >= num_classes:
        raise ValueError(f"label {largest} is outside [0, {num_classes}) (num_classes="
                         f"{num_classes})")
    return int(num_classes)


def accuracy(y_true: Any, y_pred: Any) -> float:
    """The fraction of samples whose predicted label equals the true label. `y_pred` may
    be labels or a 2-D array of scores (argmax per row); so may `y_true` (one-hot)."""
    t, p = _pair(y_true, y_pred)
    if t.size == 0:
        raise ValueError("accuracy of an empty set of samples")
    return float(np.count_nonzero(t == p) / t.size)


def top_k_accuracy(y_true: Any, scores: Any, k: int = 5) -> float:
    """The fraction of samples whose true label is among the k highest scores (ties are
    broken by position, as ``np.argpartition`` does)."""
    t = _labels(y_true, "y_true", scores_ok=False)
    s = np.asarray(scores)
    if s.ndim != 2 or len(s) != len(t):
        raise ValueError(f"scores must be (samples, classes) with {len(t)} rows, got {s.shape}")
    if not 1 <= k:
        raise ValueError(f"k must be >= 1, got {k}")
    if k >= s.shape[1]:
        return 1.0 if t.size else float("nan")
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    return float(np.mean((top == t[:, None]).any(axis=1)))


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """(num_classes, num_classes) int64 counts: entry [i, j] is the number of samples of
    true class i predicted as class j (rows true, columns predicted, as scikit-learn)."""
    t, p = _pair(y_true, y_pred)
    k = _num_classes(t, p, num_classes)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def _safe_divide(num: np.ndarray, den: np.ndarray, fill: float = 0.0) -> np.ndarray:
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    out = np.full(np.broadcast(num, den).shape, fill, np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def precision_recall_f1(y_true: Any, y_pred: Any, num_classes: int | None = None) -> dict[str, Any]:
    """Per-class and averaged precision, recall and F1.

    Returns a dict: ``precision``, ``recall``, ``f1`` (float64 arrays, one entry per
    class), ``support`` (int64: true samples per class), ``macro_precision``,
    ``macro_recall``, ``macro_f1`` (unweighted means over all classes), the same three
    ``weighted_*`` (support-weighted means) and ``accuracy``. Zero divisions give 0;
    F1 is ``2 tp / (2 tp + fp + fn)``, as in scikit-learn.
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    precision = _safe_divide(tp, predicted)
    recall = _safe_divide(tp, support)
    f1 = _safe_divide(2 * tp, predicted + support)   # 2tp + fp + fn
    total = support.sum()
    out: dict[str, Any] = {"precision": precision, "recall": recall, "f1": f1,
                           "support": support.astype(np.int64)}
    for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
        out[f"macro_{name}"] = float(values.mean()) if values.size else 0.0
        out[f"weighted_{name}"] = float(values @ support / total) if total else 0.0
    out["accuracy"] = float(tp.sum() / total) if total else 0.0
    return out


def iou(y_true: Any, y_pred: Any, num_classes: int, ignore_index: int | None = None
        ) -> dict[str, Any]:
    """Intersection over union of segmentation label maps (any shape, the same for both).

    Returns ``{"iou": per-class float64 array, "mean_iou": float}``: per class
    ``tp / (tp + fp + fn)`` over all pixels; a class absent from both maps has IoU NaN and
    is left out of the mean (NaN when every class is absent). Pixels whose true label is
    `ignore_index` (e.g. 255) are not counted.
    """
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}")
    t, p = _labels(t, "y_true", scores_ok=False), _labels(p, "y_pred", scores_ok=False)
    if ignore_index is not None:
        keep = t != ignore_index
        t, p = t[keep], p[keep]
    cm = confusion_matrix(t, p, num_classes)
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(axis=0) + cm.sum(axis=1) - tp
    per_class = _safe_divide(tp, union, fill=np.nan)
    present = ~np.isnan(per_class)
    mean = float(per_class[present].mean()) if present.any() else float("nan")
    return {"iou": per_class, "mean_iou": mean}
