"""Detection metrics: box IoU and NMS against straightforward Python, VOC all-point AP
against hand cases and a rank-by-rank formulation, COCO mAP against pycocotools."""
import contextlib
import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from graphcnn import metrics
from graphcnn.metrics.detection import check_detections


def iou_py(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def test_box_iou_hand_cases():
    a = [[0, 0, 2, 2], [0, 0, 1, 1]]
    b = [[1, 0, 3, 2], [4, 4, 5, 5], [0, 0, 2, 2]]
    got = metrics.box_iou(a, b)
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got, [[2 / 6, 0, 1], [0, 0, 0.25]])
    assert metrics.box_iou(np.zeros((0, 4)), b).shape == (0, 3)
    assert metrics.box_iou([[1, 1, 1, 1]], [[1, 1, 1, 1]])[0, 0] == 0.0   # empty boxes


def nms_py(boxes, scores, labels, thr):
    """Greedy NMS: highest score first (Python's sort is stable on ties); a box is kept
    unless a kept box of its label overlaps it by IoU > thr."""
    keep = []
    for i in sorted(range(len(boxes)), key=lambda i: -scores[i]):
        if all(labels[j] != labels[i] or iou_py(boxes[i], boxes[j]) <= thr for j in keep):
            keep.append(i)
    return keep


box = st.tuples(st.integers(0, 12), st.integers(0, 12), st.integers(0, 8),
                st.integers(0, 8)).map(lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3]))


@given(st.lists(st.tuples(box, st.sampled_from([0.1, 0.5, 0.7, 0.9]), st.integers(0, 2)),
                max_size=25),
       st.sampled_from([0.0, 0.3, 0.5, 0.7]))
def test_batched_nms_matches_python(dets, thr):
    boxes = [d[0] for d in dets]
    scores = [d[1] for d in dets]
    labels = [d[2] for d in dets]
    got = metrics.batched_nms(np.array(boxes, float).reshape(-1, 4), scores, labels, thr)
    assert got.dtype == np.int64
    assert got.tolist() == nms_py(boxes, scores, labels, thr)
    agnostic = metrics.nms(np.array(boxes, float).reshape(-1, 4), scores, thr)
    assert agnostic.tolist() == nms_py(boxes, scores, [0] * len(boxes), thr)


def test_nms_semantics_hand_cases():
    b = [[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 5]]
    # Different classes never suppress each other; same class with IoU 1 does.
    assert metrics.batched_nms(b, [0.9, 0.8, 0.95, 0.1], [0, 1, 0, 1], 0.5).tolist() == [2, 1, 3]
    # IoU exactly at the threshold is kept (only IoU > threshold suppresses).
    assert metrics.batched_nms(b, [0.9, 0.1, 0.1, 0.8], [0, 1, 2, 0], 0.5).tolist() == [0, 3, 1, 2]
    # Equal scores: input order decides.
    assert metrics.nms(b[:3], [0.5, 0.5, 0.5], 0.5).tolist() == [0]
    with pytest.raises(ValueError, match="3 boxes, 2 scores and 3 labels"):
        metrics.batched_nms(b[:3], [0.5, 0.5], [0, 0, 0], 0.5)
    with pytest.raises(ValueError, match=r"box 1 has x2 < x1"):
        metrics.nms([[0, 0, 1, 1], [5, 0, 4, 1]], [0.5, 0.4], 0.5)


# ---------------------------------------------------------------- VOC all-point AP

def test_voc_hand_case():
    # One class, two ground-truth boxes; detections: TP (0.9), FP (0.8), TP (0.7).
    preds = [{"boxes": [[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]],
              "scores": [0.9, 0.8, 0.7], "labels": [0, 0, 0]}]
    gts = [{"boxes": [[0, 0, 10, 10], [20, 20, 30, 31]], "labels": [0, 0]}]
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> AP = 1/2 * 1 + 1/2 * 2/3
    out = metrics.voc_map(preds, gts, num_classes=2)
    assert out["ap"][0] == pytest.approx(5 / 6)
    assert np.isnan(out["ap"][1]) and out["map"] == pytest.approx(5 / 6)
    # A duplicate of a matched box is a false positive; a class never detected scores 0.
    dup = [{"boxes": [[0, 0, 10, 10], [0, 0, 10, 10]], "scores": [0.9, 0.8],
            "labels": [0, 0]}]
    gts2 = [{"boxes": [[0, 0, 10, 10], [5, 5, 9, 9]], "labels": [0, 1]}]
    out = metrics.voc_map(dup, gts2)
    assert out["ap"].tolist() == [1.0, 0.0] and out["map"] == 0.5


def voc_ap_by_rank(preds, gts, k, thr=0.5):
    """AP = (1 / n_gt) * sum over true-positive ranks of the best precision at that rank
    or later: the same area as the all-point envelope, written another way."""
    aps = []
    for c in range(k):
        n_gt = sum(int(np.sum(np.asarray(g["labels"]) == c)) for g in gts)
        if n_gt == 0:
            continue
        dets = [(s, i, j) for i, p in enumerate(preds)
                for j, (s, lab) in enumerate(zip(p["scores"], p["labels"])) if lab == c]
        dets.sort(key=lambda d: -d[0])
        used = set()
        flags = []
        for _s, i, j in dets:
            cand = [g for g, lab in enumerate(gts[i]["labels"]) if lab == c]
            ious = [iou_py(preds[i]["boxes"][j], gts[i]["boxes"][g]) for g in cand]
            ok = False
            if ious:
                g = cand[int(np.argmax(ious))]
                if max(ious) >= thr and (i, g) not in used:
                    used.add((i, g))
                    ok = True
            flags.append(ok)
        prec = [sum(flags[:r + 1]) / (r + 1) for r in range(len(flags))]
        aps.append(sum(max(prec[r:]) for r in range(len(flags)) if flags[r]) / n_gt)
    return float(np.mean(aps))


def random_detections(seed, n_img=8, k=3, quarter=True):
    """Ground truth and noisy detections on a 64x64 grid of 1/4 steps (exact in binary,
    so every implementation computes bit-identical IoUs)."""
    rng = np.random.default_rng(seed)

    def boxes(n):
        xy = rng.integers(0, 200, (n, 2)) / 4
        wh = rng.integers(4, 80, (n, 2)) / 4
        return np.concatenate([xy, xy + wh], axis=1)

    preds, gts = [], []
    for _ in range(n_img):
        g = int(rng.integers(0, 6))
        gb, gl = boxes(g), rng.integers(0, k - 1, g)        # class k-1: no ground truth
        jitter = gb + rng.integers(-8, 9, gb.shape) / 4
        jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2])
        extra = int(rng.integers(0, 5))
        pb = np.concatenate([jitter, boxes(extra)])
        pl = np.concatenate([np.where(rng.random(g) < 0.8, gl, rng.integers(0, k, g)),
                             rng.integers(0, k, extra)])
        ps = np.round(rng.random(len(pb)), 1)               # ties on purpose
        perm = rng.permutation(len(pb))
        preds.append({"boxes": pb[perm], "scores": ps[perm], "labels": pl[perm]})
        gts.append({"boxes": gb, "labels": gl})
    return preds, gts


@pytest.mark.parametrize("seed", range(6))
def test_voc_map_matches_rank_formulation(seed):
    preds, gts = random_detections(seed)
    pl = [{k: np.asarray(v).tolist() for k, v in p.items()} for p in preds]
    gl = [{k: np.asarray(v).tolist() for k, v in g.items()} for g in gts]
    assert metrics.voc_map(preds, gts, 3)["map"] == pytest.approx(voc_ap_by_rank(pl, gl, 3),
                                                                  abs=1e-12)


# ---------------------------------------------------------------- COCO vs pycocotools

def pycocotools_eval(preds, gts, k):
    coco_mod = pytest.importorskip("pycocotools.coco")
    from pycocotools.cocoeval import COCOeval
    images, anns = [], []
    for i, g in enumerate(gts):
        images.append({"id": i + 1})
        for b, lab in zip(g["boxes"], g["labels"]):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(lab) + 1,
                         "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": 0})
    rows = [[i + 1, b[0], b[1], b[2] - b[0], b[3] - b[1], s, lab + 1]
            for i, p in enumerate(preds)
            for b, s, lab in zip(p["boxes"], p["scores"], p["labels"])]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = coco_mod.COCO()
        gt.dataset = {"images": images, "annotations": anns,
                      "categories": [{"id": c + 1, "name": str(c)} for c in range(k)]}
        gt.createIndex()
        dt = gt.loadRes(np.array(rows, dtype=np.float64))
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


@pytest.mark.parametrize("seed", range(5))
def test_coco_map_matches_pycocotools(seed):
    preds, gts = random_detections(seed, n_img=10)
    ev = pycocotools_eval(preds, gts, 3)
    ours = metrics.coco_map(preds, gts, num_classes=3)
    assert ours["map"] == pytest.approx(ev.stats[0], abs=1e-4)
    assert ours["map_50"] == pytest.approx(ev.stats[1], abs=1e-4)
    assert ours["map_75"] == pytest.approx(ev.stats[2], abs=1e-4)
    per_class = ev.eval["precision"][:, :, :, 0, 2]          # area 'all', maxDets 100
    for c in range(3):
        if (per_class[:, :, c] > -1).any():
            assert ours["ap"][c] == pytest.approx(per_class[:, :, c].mean(), abs=1e-4)
        else:
            assert np.isnan(ours["ap"][c])


def test_coco_max_dets_truncates_per_image_and_class():
    # 3 detections of one box, best-scored ones wrong: with max_dets=2 the true one is cut.
    preds = [{"boxes": [[50, 50, 60, 60], [70, 70, 80, 80], [0, 0, 10, 10]],
              "scores": [0.9, 0.8, 0.7], "labels": [0, 0, 0]}]
    gts = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}]
    assert metrics.coco_map(preds, gts, max_dets=2)["map"] == 0.0
    assert metrics.coco_map(preds, gts)["map"] == pytest.approx(
        pycocotools_eval(preds, gts, 1).stats[0], abs=1e-4)


# ---------------------------------------------------------------- bad input

def test_detection_input_errors():
    ok_p = {"boxes": [[0, 0, 1, 1]], "scores": [0.5], "labels": [0]}
    ok_t = {"boxes": [[0, 0, 1, 1]], "labels": [0]}
    flipped = {"boxes": [[0, 0, 1, 1], [3, 0, 2, 1]], "labels": [0, 0]}
    with pytest.raises(ValueError, match=r"targets\[1\]: box 1 has x2 < x1"):
        metrics.voc_map([ok_p, ok_p], [ok_t, flipped], 2)
    with pytest.raises(ValueError, match=r"predictions\[0\]: label 5 of box 0 is outside "
                                         r"\[0, 2\)"):
        metrics.coco_map([{**ok_p, "labels": [5]}], [ok_t], 2)
    with pytest.raises(ValueError, match=r"predictions\[0\]: 1 boxes but 2 scores"):
        metrics.voc_map([{**ok_p, "scores": [0.5, 0.4]}], [ok_t])
    with pytest.raises(ValueError, match=r"targets\[0\]: 1 boxes but 0 labels"):
        metrics.voc_map([ok_p], [{**ok_t, "labels": []}], 2)
    with pytest.raises(ValueError, match="2 images of predictions but 1 of ground truth"):
        metrics.coco_map([ok_p, ok_p], [ok_t])
    with pytest.raises(ValueError, match="key 'scores'"):
        check_detections([{"boxes": [], "labels": []}], [ok_t])
    with pytest.raises(ValueError, match=r"\(K, 4\)"):
        metrics.box_iou([[0, 0, 1]], [[0, 0, 1, 1]])


def test_empty_inputs():
    assert metrics.batched_nms(np.zeros((0, 4)), [], [], 0.5).tolist() == []
    none = {"boxes": np.zeros((0, 4)), "scores": [], "labels": []}
    truth = {"boxes": [[0, 0, 1, 1]], "labels": [1]}
    # A class with ground truth but no detection scores 0; one without ground truth: NaN.
    for fn in (metrics.voc_map, metrics.coco_map):
        out = fn([none], [truth])
        assert out["map"] == 0.0 and np.isnan(out["ap"][0]) and out["ap"][1] == 0.0
        assert np.isnan(fn([none], [{"boxes": [], "labels": []}], num_classes=2)["map"])
