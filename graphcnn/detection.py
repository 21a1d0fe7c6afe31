"""Box encoding and decoding for the grid detector (``gc.models.yolo_grid_detector``).

The image (``image_size`` pixels square) is cut into a ``grid x grid`` array of cells of
``stride = image_size / grid`` pixels. Each ground-truth box belongs to the cell that holds
its center; the detector's outputs at that cell say so:

- ``scores`` (N, 1 + C, S, S): the class of the object centred in the cell, as
  probabilities over 1 + C channels, channel 0 meaning "no object" (a background class,
  as SSD's). The target is one-hot: channel ``1 + label`` at an object's cell, channel 0
  everywhere else.
- ``boxes`` (N, 4, S, S): the object's box relative to its cell (i row, j column)::

      tx = cx / stride - j          ty = cy / stride - i        (in [0, 1): where in the cell)
      tw = log(w / stride)          th = log(h / stride)

  with (cx, cy) the box's center and (w, h) its size in pixels. The target is NaN at the
  cells without an object: the box loss is ``gc.losses.Loss("smooth_l1", ...,
  ignore_nan=True)``, which counts only the cells that hold an object.

When two boxes of an image share a cell, the larger one (by area) is kept and the other
one is not a target (the detector cannot predict both: a one-box-per-cell limit, as
YOLO-v1's). A box of zero width or height is encoded as 1/100 of a pixel (its log would be
-inf). Decoding inverts this at every cell and class whose score passes a threshold, then
keeps the best boxes by per-class non-maximum suppression (graphcnn.metrics.batched_nms).

    >>> import numpy as np
    >>> from graphcnn.detection import encode_targets, decode_predictions
    >>> t = encode_targets([np.array([[8., 8., 24., 16.]])], [np.array([1])],
    ...                    num_classes=2, image_size=32, grid=4)
    >>> t["scores"].shape, t["boxes"][0, :, 1, 2].tolist()
    ((1, 3, 4, 4), [0.0, 0.5, 0.6931471824645996, 0.0])
    >>> d = decode_predictions(t["scores"], np.nan_to_num(t["boxes"]), image_size=32)
    >>> d[0]["boxes"].round(4).tolist(), d[0]["labels"].tolist()
    ([[8.0, 8.0, 24.0, 16.0]], [1])
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from graphcnn.metrics.detection import batched_nms

__all__ = ["encode_targets", "decode_predictions", "check_boxes_and_labels"]

_MIN_SIZE = 0.01   # pixels: the size a zero-width (or zero-height) box is encoded with
_MAX_LOG = 10.0    # decoded log-sizes are clipped here: exp stays finite


def _stride(image_size: int, grid: int, owner: str) -> float:
    for name, value in (("image_size", image_size), ("grid", grid)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
    return float(image_size) / float(grid)


def check_boxes_and_labels(boxes: Sequence[Any], labels: Sequence[Any], num_classes: int
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-image boxes ``(K_n, 4)`` xyxy and labels ``(K_n,)`` in ``[0, num_classes)``,
    checked, as ``(boxes (K, 4) float64, labels (K,) int64, image (K,) int64)`` over all
    images. A bad input is a one-line ValueError naming the image and box: a box with
    x2 < x1 or y2 < y1 or a non-finite coordinate, a label out of range or not an
    integer, a different number of boxes and labels."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) \
            or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    if len(boxes) != len(labels):
        raise ValueError(f"{len(boxes)} images of boxes but {len(labels)} of labels: give "
                         f"one array of each per image")
    all_boxes, all_labels, image = [], [], []
    for n, (b, lab) in enumerate(zip(boxes, labels)):
        b = np.asarray(b, np.float64)
        b = b.reshape(0, 4) if b.size == 0 else b
        if b.ndim != 2 or b.shape[1] != 4:
            raise ValueError(f"boxes[{n}] must be a (K, 4) array of x1, y1, x2, y2, got "
                             f"shape {b.shape}")
        lab = np.asarray(lab).reshape(-1)
        if lab.size and lab.dtype.kind not in "iu":
            raise ValueError(f"labels[{n}] must be integers, got dtype {lab.dtype}")
        if len(lab) != len(b):
            raise ValueError(f"image {n}: {len(b)} boxes but {len(lab)} labels")
        all_boxes.append(b)
        all_labels.append(lab.astype(np.int64))
        image.append(np.full(len(b), n, np.int64))
    b = np.concatenate(all_boxes) if all_boxes else np.zeros((0, 4))
    lab = np.concatenate(all_labels) if all_labels else np.zeros(0, np.int64)
    img = np.concatenate(image) if image else np.zeros(0, np.int64)
    first = np.searchsorted(img, img, side="left")   # each box's index within its image

    def where(k: int) -> str:
        return f"box {int(k - first[k])} of image {int(img[k])}"

    bad = ~np.isfinite(b).all(axis=1)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{where(k)} has a NaN or infinite coordinate: {b[k].tolist()}")
    bad = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{where(k)} has x2 < x1 or y2 < y1: {b[k].tolist()} (boxes are "
                         f"x1, y1, x2, y2)")
    bad = (lab < 0) | (lab >= num_classes)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{where(k)} has label {int(lab[k])}, outside [0, {num_classes}) "
                         f"(num_classes={num_classes})")
    return b, lab, img


def encode_targets(boxes: Sequence[Any], labels: Sequence[Any], num_classes: int,
                   image_size: int, grid: int) -> dict[str, np.ndarray]:
    """The detector's training targets for N images from their ground truth: per image a
    ``(K, 4)`` array of xyxy boxes in pixels and a ``(K,)`` array of labels in
    ``[0, num_classes)``. Returns ``{"scores": (N, 1 + num_classes, grid, grid) float32
    one-hot, "boxes": (N, 4, grid, grid) float32, NaN where no object}`` (the encoding in
    the module docstring). Centers outside the image go to the nearest border cell."""
    stride = _stride(image_size, grid, "encode_targets")
    b, lab, img = check_boxes_and_labels(boxes, labels, num_classes)
    n = len(boxes)
    scores = np.zeros((n, 1 + num_classes, grid, grid), np.float32)
    out = np.full((n, 4, grid, grid), np.nan, np.float32)
    cx, cy = (b[:, 0] + b[:, 2]) / 2 / stride, (b[:, 1] + b[:, 3]) / 2 / stride
    j = np.clip(np.floor(cx), 0, grid - 1).astype(np.int64)
    i = np.clip(np.floor(cy), 0, grid - 1).astype(np.int64)
    w = np.maximum(b[:, 2] - b[:, 0], _MIN_SIZE)
    h = np.maximum(b[:, 3] - b[:, 1], _MIN_SIZE)
    # One object per cell: the largest. Sort by cell, then by decreasing area; keep firsts.
    cell = (img * grid + i) * grid + j
    order = np.lexsort((-(w * h), cell))
    keep = order[np.unique(cell[order], return_index=True)[1]]
    img, i, j = img[keep], i[keep], j[keep]
    scores[:, 0] = 1.0
    scores[img, 0, i, j] = 0.0
    scores[img, 1 + lab[keep], i, j] = 1.0
    out[img, 0, i, j] = cx[keep] - j
    out[img, 1, i, j] = cy[keep] - i
    out[img, 2, i, j] = np.log(w[keep] / stride)
    out[img, 3, i, j] = np.log(h[keep] / stride)
    return {"scores": scores, "boxes": out}


def decode_boxes(boxes: np.ndarray, image_size: int) -> np.ndarray:
    """(N, S, S, 4) xyxy pixel boxes of every cell from the ``boxes`` output
    (N, 4, S, S), clipped to the image."""
    boxes = np.asarray(boxes, np.float64)
    if boxes.ndim != 4 or boxes.shape[1] != 4 or boxes.shape[2] != boxes.shape[3]:
        raise ValueError(f"boxes must be (N, 4, S, S), got shape {boxes.shape}")
    grid = boxes.shape[2]
    stride = _stride(image_size, grid, "decode_predictions")
    cols = np.arange(grid, dtype=np.float64)
    cx = (boxes[:, 0] + cols[None, None, :]) * stride
    cy = (boxes[:, 1] + cols[None, :, None]) * stride
    w = np.exp(np.clip(boxes[:, 2], -_MAX_LOG, _MAX_LOG)) * stride
    h = np.exp(np.clip(boxes[:, 3], -_MAX_LOG, _MAX_LOG)) * stride
    xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=-1)
    return np.clip(np.nan_to_num(xyxy, nan=0.0), 0.0, float(image_size))


def decode_predictions(scores: np.ndarray, boxes: np.ndarray, image_size: int,
                       score_threshold: float = 0.05, iou_threshold: float = 0.5,
                       max_detections: int = 100) -> list[dict[str, np.ndarray]]:
    """The detections of each image from the detector's outputs ``scores`` (N, 1 + C, S,
    S) and ``boxes`` (N, 4, S, S): every (cell, class) whose probability exceeds
    `score_threshold` is a candidate box; per image and class, non-maximum suppression at
    `iou_threshold` (torchvision's ``batched_nms``) keeps the best, and at most
    `max_detections` per image are returned, by decreasing score. One dict per image:
    ``{"boxes": (K, 4) float64 xyxy pixels, "scores": (K,), "labels": (K,) int64 in
    [0, C)}``, the format of graphcnn.metrics.voc_map and coco_map."""
    scores = np.asarray(scores, np.float64)
    if scores.ndim != 4 or scores.shape[1] < 2:
        raise ValueError(f"scores must be (N, 1 + num_classes, S, S), got shape "
                         f"{scores.shape}")
    xyxy = decode_boxes(boxes, image_size)
    if xyxy.shape[0] != scores.shape[0] or xyxy.shape[1:3] != scores.shape[2:]:
        raise ValueError(f"scores {scores.shape} and boxes {np.shape(boxes)} must have the "
                         f"same images and grid")
    n, c1 = scores.shape[:2]
    img, cls, i, j = np.nonzero(scores[:, 1:] > score_threshold)
    s = scores[img, 1 + cls, i, j]
    cand = xyxy[img, i, j]
    # One batched_nms call for all images: each (image, class) pair is its own group.
    kept = batched_nms(cand, s, img * (c1 - 1) + cls, iou_threshold)
    img, cls, s, cand = img[kept], cls[kept], s[kept], cand[kept]
    order = np.lexsort((-s, img))
    img, cls, s, cand = img[order], cls[order], s[order], cand[order]
    rank = np.arange(len(img)) - np.searchsorted(img, img, side="left")
    top = rank < max_detections
    img, cls, s, cand = img[top], cls[top], s[top], cand[top]
    bounds = np.searchsorted(img, np.arange(n + 1))
    return [{"boxes": cand[a:b], "scores": s[a:b], "labels": cls[a:b].astype(np.int64)}
            for a, b in zip(bounds[:-1], bounds[1:])]
