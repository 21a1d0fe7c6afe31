"""Regression metrics against scikit-learn; segmentation metrics against hand-computed
cases and a per-class loop written from torchmetrics' macro Jaccard definition."""
import numpy as np
import pytest

from graphcnn import metrics

skm = pytest.importorskip("sklearn.metrics")


# ---------------------------------------------------------------- regression

@pytest.mark.parametrize("shape", [(50,), (40, 3)])
@pytest.mark.parametrize("seed", range(3))
def test_regression_metrics_match_sklearn(shape, seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=shape) * 3
    pred = y + rng.normal(size=shape)
    assert metrics.mae(y, pred) == pytest.approx(skm.mean_absolute_error(y, pred), rel=1e-12)
    assert metrics.rmse(y, pred) == pytest.approx(skm.root_mean_squared_error(y, pred),
                                                  rel=1e-12)
    assert metrics.r2_score(y, pred) == pytest.approx(skm.r2_score(y, pred), rel=1e-12)
    assert metrics.regression_metrics(y, pred)["r2"] == metrics.r2_score(y, pred)


def test_regression_hand_cases():
    assert metrics.mae([3, -0.5, 2, 7], [2.5, 0.0, 2, 8]) == 0.5
    assert metrics.rmse([0, 0], [3, 4]) == pytest.approx(12.5 ** 0.5)
    assert metrics.r2_score([1, 2, 3], [2, 2, 2]) == 0.0          # predicting the mean
    assert metrics.r2_score([1, 2, 3], [3, 2, 1]) == pytest.approx(-3.0)
    # A constant target: perfect fit 1.0, any error 0.0 (scikit-learn's force_finite).
    assert metrics.r2_score([2, 2], [2, 2]) == 1.0 == skm.r2_score([2, 2], [2, 2])
    assert metrics.r2_score([2, 2], [2, 3]) == 0.0 == skm.r2_score([2, 2], [2, 3])


def test_regression_bad_input():
    with pytest.raises(ValueError, match=r"shape \(3,\).*shape \(2,\)"):
        metrics.mae([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="NaN"):
        metrics.rmse([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="empty"):
        metrics.r2_score([], [])


# ---------------------------------------------------------------- segmentation

def test_segmentation_hand_case():
    # 1 image, 2x3 pixels, 3 classes; class 2 appears in neither map.
    t = np.array([[[0, 0, 1], [1, 1, 1]]])
    p = np.array([[[0, 1, 1], [1, 1, 0]]])
    m = metrics.segmentation_metrics(t, p, num_classes=3)
    # class 0: tp 1, fp 1, fn 1 -> IoU 1/3, Dice 2/4; class 1: tp 3, fp 1, fn 1 -> 3/5, 6/8
    np.testing.assert_allclose(m["iou"][:2], [1 / 3, 3 / 5])
    np.testing.assert_allclose(m["dice"][:2], [0.5, 0.75])
    assert np.isnan(m["iou"][2]) and np.isnan(m["dice"][2])
    assert m["mean_iou"] == pytest.approx((1 / 3 + 3 / 5) / 2)        # class 2 left out
    assert m["mean_dice"] == pytest.approx(0.625)
    assert m["pixel_accuracy"] == pytest.approx(4 / 6)
    np.testing.assert_array_equal(m["confusion_matrix"], [[1, 1, 0], [1, 3, 0], [0, 0, 0]])
    assert metrics.mean_iou(t, p, 3) == m["mean_iou"]
    assert metrics.dice(t, p, 3) == m["mean_dice"]
    assert metrics.pixel_accuracy(t, p, 3) == m["pixel_accuracy"]
    # Background left out of the mean: only class 1 counts.
    assert metrics.mean_iou(t, p, 3, include_background=False) == pytest.approx(3 / 5)
    # A class in the truth but never predicted scores 0 and is counted.
    p2 = np.where(t == 1, 0, 0)
    m2 = metrics.segmentation_metrics(t, p2, num_classes=3)
    assert m2["iou"][1] == 0.0 and m2["mean_iou"] == pytest.approx((2 / 6 + 0) / 2)


def test_ignore_index_pixels_and_class():
    t = np.array([[[0, 255, 1], [1, 255, 1]]])
    p = np.array([[[0, 1, 1], [1, 0, 1]]])
    m = metrics.segmentation_metrics(t, p, num_classes=2, ignore_index=255)
    assert m["pixel_accuracy"] == 1.0 and m["mean_iou"] == 1.0
    assert m["confusion_matrix"].sum() == 4
    # ignore_index that is a class: its pixels are dropped and it leaves the mean.
    t3 = np.array([[[0, 2, 1], [1, 2, 1]]])
    p3 = np.array([[[0, 1, 1], [1, 0, 1]]])
    assert metrics.mean_iou(t3, p3, num_classes=3, ignore_index=2) == 1.0


def torchmetrics_style_miou(t, p, k, ignore_index=None):
    """MulticlassJaccardIndex(average='macro') written out with a loop over classes."""
    keep = t != ignore_index if ignore_index is not None else np.ones(t.shape, bool)
    t, p = t[keep], p[keep]
    scores = []
    for c in range(k):
        if c == ignore_index:
            continue
        inter = np.sum((t == c) & (p == c))
        union = np.sum((t == c) | (p == c))
        if union:
            scores.append(inter / union)
    return np.mean(scores)


@pytest.mark.parametrize("seed", range(4))
def test_miou_matches_loop_and_logits_are_argmaxed(seed):
    rng = np.random.default_rng(seed)
    k = 5
    t = rng.integers(0, k - 1, (3, 7, 6))                  # class 4 never in the truth
    logits = rng.normal(size=(3, k, 7, 6))
    logits[:, 4] -= 10                                     # ... nor predicted
    p = logits.argmax(1)
    t[0, 0, :3] = 255
    want = torchmetrics_style_miou(t, p, k, ignore_index=255)
    assert metrics.mean_iou(t, logits, k, ignore_index=255) == pytest.approx(want)
    assert metrics.mean_iou(t, p, k, ignore_index=255) == pytest.approx(want)
    # The original label-map iou agrees on the whole-set mean.
    assert metrics.iou(t, p, k, ignore_index=255)["mean_iou"] == pytest.approx(want)


def test_per_image_averaging():
    t = np.array([[[0, 0], [0, 0]], [[1, 1], [0, 0]]])
    p = np.array([[[0, 0], [0, 1]], [[1, 1], [0, 0]]])
    # image 0: class 0 IoU 3/4, class 1 IoU 0 -> 3/8; image 1: both 1 -> 1.
    assert metrics.mean_iou(t, p, 2, per_image=True) == pytest.approx((3 / 8 + 1) / 2)
    # whole set: class 0 tp 5 union 6; class 1 tp 2 union 3
    assert metrics.mean_iou(t, p, 2) == pytest.approx((5 / 6 + 2 / 3) / 2)
    per = metrics.segmentation_confusion_matrix(t, p, 2, per_image=True)
    assert per.shape == (2, 2, 2)
    np.testing.assert_array_equal(per.sum(0), metrics.segmentation_confusion_matrix(t, p, 2))


def test_segmentation_bad_input():
    t = np.zeros((2, 4, 4), np.int64)
    with pytest.raises(ValueError, match=r"y_pred has shape \(2, 4, 5\).*y_true has shape"):
        metrics.mean_iou(t, np.zeros((2, 4, 5), np.int64), 3)
    with pytest.raises(ValueError, match="2 channels but num_classes=3"):
        metrics.mean_iou(t, np.zeros((2, 2, 4, 4)), 3)
    bad = t.copy()
    bad[1, 2, 3] = 3
    with pytest.raises(ValueError, match=r"y_true has label 3 outside \[0, 3\)"):
        metrics.mean_iou(bad, t, 3)
    with pytest.raises(ValueError, match=r"y_pred has label -1 outside"):
        metrics.dice(t, t - 1, 3)
    with pytest.raises(ValueError, match=r"y_true must be \(N, H, W\)"):
        metrics.pixel_accuracy(t[0], t[0], 3)
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        metrics.mean_iou(t, t, 0)


@pytest.mark.parametrize("module", ["regression", "segmentation", "detection", "detection_ap"])
def test_docstring_examples_hold(module):
    import doctest
    import importlib
    result = doctest.testmod(importlib.import_module(f"graphcnn.metrics.{module}"))
    assert result.attempted > 0 and result.failed == 0
