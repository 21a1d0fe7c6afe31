"""Average precision for object detection: PASCAL VOC (all-point) and COCO (101-point).

Input format (see :mod:`graphcnn.metrics.detection`): one dict per image in each list,
``predictions[i] = {"boxes": (K, 4) xyxy, "scores": (K,), "labels": (K,)}`` and
``targets[i] = {"boxes": (G, 4) xyxy, "labels": (G,)}``, labels in ``[0, num_classes)``.
There are no "difficult" or "crowd" ground-truth boxes; every ground-truth box counts.

A class with no ground-truth box in the whole set has no AP (NaN in the per-class array)
and is left out of the mean; a class with ground truth but no detection scores 0.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from graphcnn.metrics.detection import box_iou, check_detections

__all__ = ["voc_map", "coco_map", "average_precision_all_point"]


def average_precision_all_point(recall: Any, precision: Any) -> float:
    """Area under the precision envelope (PASCAL VOC 2010+ "all-point" interpolation):
    precision is made monotonically non-increasing from the right, then summed over the
    recall steps. `recall` and `precision` are the cumulative curves over detections
    sorted by decreasing score.

    >>> average_precision_all_point([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3])
    0.8333333333333333
    """
    mrec = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    mpre = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def voc_map(predictions: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]],
            num_classes: int | None = None, iou_threshold: float = 0.5) -> dict[str, Any]:
    """Per-class AP and mAP at one IoU threshold (0.5: mAP@0.5), PASCAL VOC style.

    For each class, the detections of all images are taken by decreasing score (ties in
    image order, then input order); each is matched to the ground-truth box of its class
    in its image with which it has the highest IoU: a true positive if that IoU is
    >= `iou_threshold` and the box is not yet matched, a false positive otherwise (the
    VOC devkit's rule; it writes ``>`` where we write ``>=``, which differs only on an
    exact tie). AP is the all-point interpolated area
    (:func:`average_precision_all_point`). Returns ``{"ap": (num_classes,) float64
    (NaN for a class without ground truth), "map": mean over the other classes}``.

    >>> p = [{"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]], "scores": [0.9, 0.8],
    ...       "labels": [0, 0]}]
    >>> t = [{"boxes": [[0, 0, 10, 11]], "labels": [0]}]
    >>> voc_map(p, t)["map"]
    1.0
    """
    preds, gts, k = check_detections(predictions, targets, num_classes)
    ap = np.full(k, np.nan)
    for c in range(k):
        n_gt = sum(int(np.count_nonzero(lab == c)) for _, lab in gts)
        if n_gt == 0:
            continue
        scores, img, idx = [], [], []
        for i, (_, s, lab) in enumerate(preds):
            sel = np.flatnonzero(lab == c)
            scores.append(s[sel])
            img.append(np.full(len(sel), i))
            idx.append(sel)
        s_all = np.concatenate(scores)
        order = np.argsort(-s_all, kind="stable")
        img_all, idx_all = np.concatenate(img)[order], np.concatenate(idx)[order]
        gt_boxes = [b[lab == c] for b, lab in gts]
        matched = [np.zeros(len(b), bool) for b in gt_boxes]
        tp = np.zeros(len(order))
        for d, (i, j) in enumerate(zip(img_all, idx_all)):
            if len(gt_boxes[i]) == 0:
                continue
            ious = box_iou(preds[i][0][j:j + 1], gt_boxes[i])[0]
            g = int(np.argmax(ious))
            if ious[g] >= iou_threshold and not matched[i][g]:
                matched[i][g] = True
                tp[d] = 1.0
        ctp = np.cumsum(tp)
        cfp = np.cumsum(1.0 - tp)
        ap[c] = average_precision_all_point(ctp / n_gt, ctp / np.maximum(ctp + cfp, 1e-300))
    present = ~np.isnan(ap)
    return {"ap": ap, "map": float(ap[present].mean()) if present.any() else float("nan")}


# pycocotools' thresholds: IoU .50:.05:.95 and recall 0:.01:1.
_IOU_THRS = np.linspace(0.5, 0.95, 10)
_REC_THRS = np.linspace(0.0, 1.0, 101)


def _match_coco(ious: np.ndarray, thr: float) -> np.ndarray:
    """pycocotools' greedy matching of score-sorted detections (rows) to ground truth
    (columns) at one threshold: each detection takes the unmatched box of highest IoU
    >= thr (on equal IoU the later box). Returns a bool 'matched' flag per detection."""
    n_d, n_g = ious.shape
    dtm = np.zeros(n_d, bool)
    gtm = np.zeros(n_g, bool)
    for d in range(n_d):
        best, m = min(thr, 1 - 1e-10), -1
        for g in range(n_g):
            if gtm[g] or ious[d, g] < best:
                continue
            best, m = ious[d, g], g
        if m >= 0:
            dtm[d] = gtm[m] = True
    return dtm


def coco_map(predictions: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]],
             num_classes: int | None = None, max_dets: int = 100) -> dict[str, Any]:
    """COCO box mAP as pycocotools' ``COCOeval`` computes it (area 'all', maxDets 100).

    Per image and class, the `max_dets` highest-scoring detections are matched greedily
    (by decreasing score) to the unmatched ground-truth box of highest IoU, at each IoU
    threshold .50, .55, ..., .95; per class, the detections of all images are ranked by
    score and precision is sampled at the 101 recall points 0, .01, ..., 1 from the
    precision envelope (101-point interpolation). Returns ``{"map"`` (mAP@[.5:.95]),
    ``"map_50"``, ``"map_75"`` (101-point, as pycocotools' AP50/AP75; VOC's all-point
    mAP@0.5 is :func:`voc_map`), ``"ap"``: (num_classes,) per-class AP@[.5:.95], NaN for a
    class without ground truth}``.

    >>> p = [{"boxes": [[0, 0, 10, 10]], "scores": [0.9], "labels": [0]}]
    >>> t = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}]
    >>> round(coco_map(p, t)["map"], 6)   # pycocotools' precision is tp / (tp + fp + eps)
    1.0
    """
    preds, gts, k = check_detections(predictions, targets, num_classes)
    n_t = len(_IOU_THRS)
    precision = np.full((n_t, len(_REC_THRS), k), -1.0)
    for c in range(k):
        n_gt = sum(int(np.count_nonzero(lab == c)) for _, lab in gts)
        if n_gt == 0:
            continue
        scores, dtm = [], []
        for (pb, ps, pl), (gb, gl) in zip(preds, gts):
            sel = np.flatnonzero(pl == c)
            sel = sel[np.argsort(-ps[sel], kind="mergesort")][:max_dets]
            ious = box_iou(pb[sel], gb[gl == c])
            scores.append(ps[sel])
            dtm.append(np.stack([_match_coco(ious, t) for t in _IOU_THRS]).reshape(n_t, -1))
        s_all = np.concatenate(scores)
        order = np.argsort(-s_all, kind="mergesort")
        matched = np.concatenate(dtm, axis=1)[:, order]
        nd = matched.shape[1]
        for ti in range(n_t):
            tp = np.cumsum(matched[ti]).astype(np.float64)
            fp = np.cumsum(~matched[ti]).astype(np.float64)
            rc = tp / n_gt
            pr = np.maximum.accumulate((tp / (fp + tp + np.spacing(1)))[::-1])[::-1]
            q = np.zeros(len(_REC_THRS))
            inds = np.searchsorted(rc, _REC_THRS, side="left")
            ok = inds < nd
            q[ok] = pr[inds[ok]]
            precision[ti, :, c] = q
    valid = precision[0, 0] > -1

    def mean(p: np.ndarray) -> float:
        return float(p[..., valid].mean()) if valid.any() else float("nan")

    ap = np.full(k, np.nan)
    ap[valid] = precision[..., valid].mean(axis=(0, 1))
    return {"map": mean(precision), "map_50": mean(precision[0]),
            "map_75": mean(precision[5]), "ap": ap}


def mean_average_precision(predictions: Sequence[dict[str, Any]],
                           targets: Sequence[dict[str, Any]],
                           num_classes: int | None = None) -> dict[str, Any]:
    """Both detection scores at once: ``{"map_50"`` (PASCAL VOC all-point mAP@0.5,
    :func:`voc_map`), ``"ap_50"`` (its per-class APs), ``"map"`` (COCO mAP@[.5:.95],
    101-point, :func:`coco_map`), ``"ap"`` (its per-class APs)}``.

    >>> p = [{"boxes": [[0, 0, 10, 10]], "scores": [0.9], "labels": [0]}]
    >>> t = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}]
    >>> m = mean_average_precision(p, t)
    >>> m["map_50"], round(m["map"], 6)
    (1.0, 1.0)
    """
    voc = voc_map(predictions, targets, num_classes)
    coco = coco_map(predictions, targets, num_classes)
    return {"map_50": voc["map"], "ap_50": voc["ap"], "map": coco["map"], "ap": coco["ap"]}
