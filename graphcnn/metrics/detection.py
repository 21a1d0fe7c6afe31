"""Detection basics: box IoU, non-maximum suppression, and the checked input format.

Boxes are ``(x1, y1, x2, y2)`` in continuous coordinates (area ``(x2 - x1) * (y2 - y1)``,
no "+1 pixel"), as torchvision and pycocotools. The per-image input format of the
average-precision functions (:mod:`graphcnn.metrics.detection_ap`) is:

- a prediction: ``{"boxes": (K, 4) float xyxy, "scores": (K,) float, "labels": (K,) int}``
- a ground truth: ``{"boxes": (G, 4) float xyxy, "labels": (G,) int}``

with labels in ``[0, num_classes)``; ``predictions[i]`` and ``targets[i]`` describe image i.
"""
from __future__ import annotations

from typing import Any, Sequence

import numba
import numpy as np

__all__ = ["box_iou", "nms", "batched_nms", "check_detections"]


def _boxes(b: Any, what: str) -> np.ndarray:
    """(K, 4) float64 boxes; a box with x2 < x1 or y2 < y1 is an error naming it."""
    a = np.asarray(b, dtype=np.float64)
    if a.size == 0:
        return a.reshape(0, 4)
    if a.ndim != 2 or a.shape[1] != 4:
        raise ValueError(f"{what}: boxes must be a (K, 4) array of x1, y1, x2, y2, got "
                         f"shape {a.shape}")
    if not np.all(np.isfinite(a)):
        i = int(np.flatnonzero(~np.isfinite(a).all(axis=1))[0])
        raise ValueError(f"{what}: box {i} has a NaN or infinite coordinate: {a[i].tolist()}")
    bad = (a[:, 2] < a[:, 0]) | (a[:, 3] < a[:, 1])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what}: box {i} has x2 < x1 or y2 < y1: {a[i].tolist()} "
                         f"(boxes are x1, y1, x2, y2)")
    return a


def box_iou(boxes1: Any, boxes2: Any) -> np.ndarray:
    """(N, M) float64 IoU of every box in `boxes1` (N, 4) with every box in `boxes2`
    (M, 4), xyxy. Two empty boxes have IoU 0 (not NaN).

    >>> box_iou([[0, 0, 2, 2]], [[1, 0, 3, 2], [4, 4, 5, 5]]).round(4).tolist()
    [[0.3333, 0.0]]
    """
    a, b = _boxes(boxes1, "boxes1"), _boxes(boxes2, "boxes2")
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(w, 0, None) * np.clip(h, 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


@numba.njit(cache=True, nogil=True)
def _nms_kernel(boxes: np.ndarray, order: np.ndarray, labels: np.ndarray,
                threshold: float) -> np.ndarray:  # pragma: no cover - compiled
    """Greedy NMS over boxes visited in `order`; a box suppresses later boxes of its own
    label whose IoU with it is > threshold. Returns kept indices in visiting order."""
    n = order.shape[0]
    removed = np.zeros(n, np.bool_)
    keep = np.empty(n, np.int64)
    nk = 0
    for ii in range(n):
        if removed[ii]:
            continue
        i = order[ii]
        keep[nk] = i
        nk += 1
        ax1, ay1, ax2, ay2 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        area_i = (ax2 - ax1) * (ay2 - ay1)
        for jj in range(ii + 1, n):
            if removed[jj]:
                continue
            j = order[jj]
            if labels[j] != labels[i]:
                continue
            w = min(ax2, boxes[j, 2]) - max(ax1, boxes[j, 0])
            h = min(ay2, boxes[j, 3]) - max(ay1, boxes[j, 1])
            if w <= 0.0 or h <= 0.0:
                continue
            inter = w * h
            union = area_i + (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1]) - inter
            if union > 0.0 and inter / union > threshold:
                removed[jj] = True
    return keep[:nk]


def batched_nms(boxes: Any, scores: Any, labels: Any, iou_threshold: float) -> np.ndarray:
    """Non-maximum suppression per class, with torchvision's ``batched_nms`` semantics.

    Boxes are visited by score, highest first (equal scores keep their input order); a
    kept box removes every later box *of the same label* whose IoU with it is greater
    than `iou_threshold`; boxes of different labels never suppress each other. Returns
    the int64 indices of the kept boxes, sorted by decreasing score.

    >>> b = [[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10]]
    >>> batched_nms(b, [0.9, 0.8, 0.7], [0, 0, 1], 0.5).tolist()
    [0, 2]
    """
    b = _boxes(boxes, "boxes")
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    lab = np.asarray(labels).reshape(-1)
    if len(s) != len(b) or len(lab) != len(b):
        raise ValueError(f"batched_nms: {len(b)} boxes, {len(s)} scores and {len(lab)} "
                         f"labels: the three must have the same length")
    if not np.all(np.isfinite(s)):
        raise ValueError("batched_nms: scores contain NaN or infinite values")
    if lab.size and lab.dtype.kind not in "iub":
        raise ValueError(f"batched_nms: labels must be integers, got dtype {lab.dtype}")
    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    order = np.argsort(-s, kind="stable")
    return _nms_kernel(np.ascontiguousarray(b), order.astype(np.int64),
                       lab.astype(np.int64), float(iou_threshold))


def nms(boxes: Any, scores: Any, iou_threshold: float) -> np.ndarray:
    """Class-agnostic non-maximum suppression (torchvision's ``nms``): every box may
    suppress every other. Returns kept indices sorted by decreasing score.

    >>> nms([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], [0.9, 0.8, 0.7], 0.5).tolist()
    [0, 2]
    """
    n = len(np.asarray(scores).reshape(-1))
    return batched_nms(boxes, scores, np.zeros(n, np.int64), iou_threshold)


def _labels(lab: Any, n: int, num_classes: int, what: str) -> np.ndarray:
    a = np.asarray(lab).reshape(-1)
    if a.size and a.dtype.kind not in "iu":
        if a.dtype.kind == "f" and np.all(a == np.round(a)):
            a = a.astype(np.int64)
        else:
            raise ValueError(f"{what}: labels must be integers, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if len(a) != n:
        raise ValueError(f"{what}: {n} boxes but {len(a)} labels")
    bad = (a < 0) | (a >= num_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what}: label {int(a[i])} of box {i} is outside [0, "
                         f"{num_classes}) (num_classes={num_classes})")
    return a


def _get(d: Any, key: str, what: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise ValueError(f"{what} must be a dict with key {key!r}")
    return d[key]


def check_detections(predictions: Sequence[dict[str, Any]],
                     targets: Sequence[dict[str, Any]], num_classes: int | None = None
                     ) -> tuple[list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                                list[tuple[np.ndarray, np.ndarray]], int]:
    """Validated float64/int64 arrays from the per-image format in the module docstring:
    ``([(boxes, scores, labels)] per image, [(boxes, labels)] per image, num_classes)``.
    ``num_classes=None`` takes the largest label + 1. Errors name the image and box.

    >>> p, t, k = check_detections([{"boxes": [[0, 0, 1, 1]], "scores": [0.5],
    ...                              "labels": [2]}], [{"boxes": [], "labels": []}])
    >>> k
    3
    """
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} images of predictions but {len(targets)} of "
                         f"ground truth: give one dict per image in both")
    if num_classes is None:
        largest = -1
        for d in list(predictions) + list(targets):
            lab = np.asarray(_get(d, "labels", "each prediction and target"))
            if lab.size:
                largest = max(largest, int(np.max(lab)))
        num_classes = largest + 1
    elif isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    k = int(num_classes)
    preds, gts = [], []
    for i, (p, t) in enumerate(zip(predictions, targets)):
        what = f"predictions[{i}]"
        b = _boxes(_get(p, "boxes", what), what)
        s = np.asarray(_get(p, "scores", what), dtype=np.float64).reshape(-1)
        if len(s) != len(b):
            raise ValueError(f"{what}: {len(b)} boxes but {len(s)} scores")
        if not np.all(np.isfinite(s)):
            raise ValueError(f"{what}: scores contain NaN or infinite values")
        preds.append((b, s, _labels(_get(p, "labels", what), len(b), k, what)))
        what = f"targets[{i}]"
        tb = _boxes(_get(t, "boxes", what), what)
        gts.append((tb, _labels(_get(t, "labels", what), len(tb), k, what)))
    return preds, gts, k
