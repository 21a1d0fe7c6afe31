"""Metrics in NumPy (and one Numba kernel): ``gc.metrics``.

- classification (:mod:`.classification`): accuracy, top-k accuracy, confusion matrix,
  precision/recall/F1, and the original label-map ``iou``;
- regression (:mod:`.regression`): MAE, RMSE, R^2, as scikit-learn;
- segmentation (:mod:`.segmentation`): pixel accuracy, per-class IoU, mIoU, Dice on
  (N, H, W) label maps, with torchmetrics' conventions by default;
- detection (:mod:`.detection`, :mod:`.detection_ap`): box IoU, per-class non-maximum
  suppression (torchvision's ``batched_nms``), per-class AP and mAP@0.5 (PASCAL VOC
  all-point) and COCO mAP@[.5:.95] (as pycocotools).
"""
from __future__ import annotations

from graphcnn.metrics.classification import (
    accuracy,
    confusion_matrix,
    iou,
    precision_recall_f1,
    top_k_accuracy,
)
from graphcnn.metrics.detection import batched_nms, box_iou, nms
from graphcnn.metrics.detection_ap import (
    average_precision_all_point,
    coco_map,
    mean_average_precision,
    voc_map,
)
from graphcnn.metrics.regression import mae, r2_score, regression_metrics, rmse
from graphcnn.metrics.segmentation import (
    dice,
    mean_iou,
    pixel_accuracy,
    segmentation_confusion_matrix,
    segmentation_metrics,
)

miou = mean_iou   # the short name

__all__ = ["accuracy", "top_k_accuracy", "confusion_matrix", "precision_recall_f1", "iou",
           "mae", "rmse", "r2_score", "regression_metrics",
           "segmentation_confusion_matrix", "segmentation_metrics", "pixel_accuracy",
           "mean_iou", "miou", "dice",
           "box_iou", "nms", "batched_nms", "voc_map", "coco_map",
           "mean_average_precision",
           "average_precision_all_point"]
