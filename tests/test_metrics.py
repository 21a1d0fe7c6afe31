"""Metrics against scikit-learn on random labels."""
import numpy as np
import pytest

from graphcnn import metrics

skm = pytest.importorskip("sklearn.metrics")


def random_labels(seed, n=300, k=6):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    pred = np.where(rng.random(n) < 0.6, y, rng.integers(0, k, n))
    return y, pred


@pytest.mark.parametrize("seed", range(4))
def test_accuracy_and_confusion_matrix_match_sklearn(seed):
    y, pred = random_labels(seed)
    assert metrics.accuracy(y, pred) == pytest.approx(skm.accuracy_score(y, pred))
    cm = metrics.confusion_matrix(y, pred, num_classes=6)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, pred, labels=range(6)))


def test_scores_are_reduced_by_argmax():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 4))
    y = rng.integers(0, 4, 50)
    pred = logits.argmax(1)
    assert metrics.accuracy(y, logits) == metrics.accuracy(y, pred)
    np.testing.assert_array_equal(metrics.confusion_matrix(y, logits, 4),
                                  metrics.confusion_matrix(y, pred, 4))
    assert metrics.accuracy(np.eye(4)[y], logits) == metrics.accuracy(y, pred)  # one-hot truth


@pytest.mark.parametrize("seed", range(4))
def test_precision_recall_f1_match_sklearn(seed):
    k = 7
    y, pred = random_labels(seed, n=120, k=k)
    pred[pred == 3] = 4          # class 3 never predicted: precision 0 by zero_division
    y[y == 5] = 6                # class 5 absent from y_true: recall 0
    out = metrics.precision_recall_f1(y, pred, num_classes=k)
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=range(k), zero_division=0)
    np.testing.assert_allclose(out["precision"], p)
    np.testing.assert_allclose(out["recall"], r)
    np.testing.assert_allclose(out["f1"], f)
    np.testing.assert_array_equal(out["support"], s)
    for avg in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(y, pred, labels=range(k), average=avg,
                                                         zero_division=0)
        assert out[f"{avg}_precision"] == pytest.approx(p)
        assert out[f"{avg}_recall"] == pytest.approx(r)
        assert out[f"{avg}_f1"] == pytest.approx(f)
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))


def test_num_classes_default_and_errors():
    y = np.array([0, 2, 2, 1])
    pred = np.array([0, 1, 2, 1])
    assert metrics.confusion_matrix(y, pred).shape == (3, 3)
    assert metrics.confusion_matrix(y, pred, num_classes=5).shape == (5, 5)
    with pytest.raises(ValueError, match="outside"):
        metrics.confusion_matrix(y, pred, num_classes=2)
    with pytest.raises(ValueError, match="negative"):
        metrics.confusion_matrix([-1, 0], [0, 0])
    with pytest.raises(ValueError, match="labels"):
        metrics.accuracy([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="integers"):
        metrics.accuracy([0.5, 1], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        metrics.accuracy([], [])


def test_top_k_accuracy_matches_sklearn():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(80, 6))
    y = rng.integers(0, 6, 80)
    for k in (1, 2, 3):
        assert metrics.top_k_accuracy(y, scores, k) == pytest.approx(
            skm.top_k_accuracy_score(y, scores, k=k, labels=range(6)))
    assert metrics.top_k_accuracy(y, scores, 6) == 1.0


def test_iou_matches_jaccard_and_handles_absent_classes():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, (3, 16, 16))
    pred = np.where(rng.random(y.shape) < 0.7, y, rng.integers(0, 4, y.shape))
    out = metrics.iou(y, pred, num_classes=5)  # class 4 appears in neither map
    expected = skm.jaccard_score(y.ravel(), pred.ravel(), labels=range(4), average=None)
    np.testing.assert_allclose(out["iou"][:4], expected)
    assert np.isnan(out["iou"][4])
    assert out["mean_iou"] == pytest.approx(expected.mean())
    # a class only predicted has IoU 0 and counts in the mean
    only_pred = metrics.iou(np.zeros(4, int), np.array([0, 0, 1, 1]), num_classes=3)
    np.testing.assert_allclose(only_pred["iou"][:2], [0.5, 0.0])
    assert only_pred["mean_iou"] == pytest.approx(0.25)


def test_iou_ignore_index():
    y = np.array([[0, 1], [255, 1]])
    pred = np.array([[0, 1], [0, 0]])
    out = metrics.iou(y, pred, num_classes=2, ignore_index=255)
    np.testing.assert_allclose(out["iou"], [0.5, 0.5])
    with pytest.raises(ValueError, match="shape"):
        metrics.iou(y, pred.ravel(), num_classes=2)


def test_gc_metrics_is_this_module():
    import graphcnn as gc
    assert gc.metrics.precision_recall_f1 is metrics.precision_recall_f1
