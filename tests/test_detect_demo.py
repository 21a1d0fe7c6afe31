"""The detect demo's code on a tiny configuration (seconds): the two-head loss falls, the
outputs have the detector's shapes, the metrics are computed, the PNG is written; and the
grid detector's model, box encoding and decoding, and bad-input errors."""
import argparse

import numpy as np
import pytest

import graphcnn as gc
from graphcnn.demos import TASKS
from graphcnn.demos.detect import Config, demo
from graphcnn.detection import decode_predictions, encode_targets

TINY = Config(n_train=48, n_test=8, image_size=32, grid=4, width=4)


def test_the_demo_on_a_tiny_configuration(tmp_path, capsys):
    assert "detect" in TASKS
    args = argparse.Namespace(epochs=3, batch_size=16, lr=0.01, seed=0, backend="cpu",
                              quiet=True, out=str(tmp_path), on_nonfinite="raise",
                              on_divergence="warn")
    made = demo(args, TINY)
    losses = made["history"].history["loss"]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    out = made["trainer"].predict(made["test"].images)
    assert out["scores"].shape == (8, 4, 4, 4) and out["boxes"].shape == (8, 4, 4, 4)
    np.testing.assert_allclose(out["scores"].sum(axis=1), 1.0, rtol=1e-5)   # softmax
    assert len(made["detections"]) == 8
    for key in ("map_50", "coco_map"):
        assert 0.0 <= made["metrics"][key] <= 1.0
    assert made["metrics"]["ap_50"].shape == (3,)
    printed = capsys.readouterr().out
    assert "mAP@0.5" in printed and "COCO mAP" in printed and "triangle" in printed
    assert made["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_model_in_the_zoo_and_its_argument_errors():
    m = gc.models.get_model("yolo_grid_detector", num_classes=2, image_size=32, width=4,
                            grid=8)
    exe = gc.compile(m, batch_size=2, backend="reference")
    scores, boxes = exe(np.zeros((2, 3, 32, 32), np.float32))
    assert scores.shape == (2, 3, 8, 8) and boxes.shape == (2, 4, 8, 8)
    with pytest.raises(ValueError, match="power of two"):
        gc.models.yolo_grid_detector(3, image_size=48, grid=5)
    with pytest.raises(ValueError, match="width must be an int >= 1"):
        gc.models.yolo_grid_detector(3, width=0)


def test_encoding_round_trips_and_keeps_the_larger_box_of_a_shared_cell():
    boxes = [np.array([[2.0, 3.0, 14.0, 9.0], [17.0, 1.0, 31.0, 30.0], [18.0, 2.0, 22.0, 6.0]]),
             np.zeros((0, 4))]
    labels = [np.array([0, 2, 1]), np.array([], np.int64)]
    t = encode_targets(boxes, labels, num_classes=3, image_size=32, grid=4)
    assert t["scores"].shape == (2, 4, 4, 4) and t["boxes"].shape == (2, 4, 4, 4)
    # box 0: center (8, 6) -> cell row 0, column 1; tx 0, ty 0.75, tw log(12/8), th log(6/8)
    np.testing.assert_allclose(t["boxes"][0, :, 0, 1],
                               [0.0, 0.75, np.log(1.5), np.log(0.75)], rtol=1e-6)
    assert t["scores"][0, 1, 0, 1] == 1 and t["scores"][0, 0, 0, 1] == 0
    # boxes 1 and 2 share cell (1, 3)... no: box 2's center (20, 4) is cell (0, 2); box 1
    # (24, 15.5) is cell (1, 3): both kept
    assert t["scores"][0, 3, 1, 3] == 1 and t["scores"][0, 2, 0, 2] == 1
    assert np.isnan(t["boxes"][0, :, 3, 3]).all() and t["scores"][1, 0].all()
    same = [np.array([[0.0, 0.0, 8.0, 8.0], [1.0, 1.0, 5.0, 5.0]])]     # one cell, two boxes
    t2 = encode_targets(same, [np.array([1, 0])], 3, 32, 4)
    assert t2["scores"][0, 2, 0, 0] == 1 and t2["scores"][0, 1].sum() == 0   # the larger
    found = decode_predictions(t["scores"], np.nan_to_num(t["boxes"]), image_size=32,
                               score_threshold=0.5)
    order = np.argsort(found[0]["labels"])
    np.testing.assert_allclose(found[0]["boxes"][order], boxes[0][[0, 2, 1]], atol=1e-4)
    assert found[0]["labels"][order].tolist() == [0, 1, 2] and len(found[1]["boxes"]) == 0


def test_decoding_suppresses_overlaps_per_class_and_caps_detections():
    scores = np.zeros((1, 3, 2, 2))
    scores[0, 0] = 0.1
    scores[0, 1] = [[0.9, 0.8], [0.2, 0.01]]
    scores[0, 2] = [[0.7, 0.0], [0.0, 0.0]]
    boxes = np.zeros((1, 4, 2, 2))
    boxes[0, 2:] = np.log(4.0)          # every cell's box: 4 cells wide, overlapping all
    found = decode_predictions(scores, boxes, image_size=8, score_threshold=0.05)[0]
    # class 0: 0.9 keeps, 0.8 and 0.2 overlap it (IoU > 0.5) and go; class 1: 0.7 stays
    assert found["labels"].tolist() == [0, 1] and found["scores"].tolist() == [0.9, 0.7]
    capped = decode_predictions(scores, boxes, 8, iou_threshold=1.0, max_detections=2)[0]
    assert capped["scores"].tolist() == [0.9, 0.8]


@pytest.mark.parametrize("boxes,labels,message", [
    ([np.array([[5.0, 0, 1, 4]])], [np.array([0])], "box 0 of image 0 has x2 < x1"),
    ([np.zeros((0, 4)), np.array([[0, 0, 2, 2], [0, 5.0, 2, 1]])], [np.zeros(0, int),
                                                                  np.array([0, 1])],
     "box 1 of image 1 has x2 < x1 or y2 < y1"),
    ([np.array([[0, 0, 2, 2.0]])], [np.array([3])], r"label 3, outside \[0, 3\)"),
    ([np.array([[0, 0, 2, 2.0]])], [np.array([-1])], r"label -1, outside"),
    ([np.array([[0, 0, 2, 2.0]])], [np.array([0, 1])], "image 0: 1 boxes but 2 labels"),
    ([np.array([[0, 0, 2, 2.0]])], [np.array([0]), np.array([1])],
     "1 images of boxes but 2 of labels"),
    ([np.array([[0, 0, 2.0]])], [np.array([0])], r"boxes\[0\] must be a \(K, 4\) array"),
    ([np.array([[0, 0, np.nan, 2.0]])], [np.array([0])], "NaN or infinite"),
    ([np.array([[0, 0, 2, 2.0]])], [np.array([0.5])], "labels.0. must be integers"),
])
def test_bad_ground_truth_is_a_one_line_error(boxes, labels, message):
    with pytest.raises(ValueError, match=message) as err:
        encode_targets(boxes, labels, num_classes=3, image_size=32, grid=4)
    assert "\n" not in str(err.value)


def test_onnx_export_reimport_and_onnxruntime_agree(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    m = gc.models.yolo_grid_detector(3, image_size=32, width=4, grid=4)
    rng = np.random.default_rng(0)
    for p in m.parameters().values():   # running statistics and weights away from defaults
        p[...] = rng.uniform(0.5, 1.5, p.shape) if p.ndim == 1 else \
            rng.standard_normal(p.shape) * 0.3
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    want = gc.compile(m, batch_size=2, backend="cpu")(x)
    path = tmp_path / "detector.onnx"
    gc.onnx.save(m, path)
    again = gc.compile(gc.onnx.load(path), batch_size=2, backend="cpu")(x)
    session = ort.InferenceSession(str(path))
    assert [o.name for o in session.get_outputs()] == ["scores", "boxes"]
    runtime = session.run(None, {session.get_inputs()[0].name: x})
    for w, a, r in zip(want, again, runtime):
        np.testing.assert_allclose(a, w, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(r, w, rtol=1e-4, atol=1e-4)


def test_the_trainer_metrics_function_scores_perfect_predictions_as_1():
    from graphcnn.demos.detect import detection_metrics
    ds = gc.data.shapes(6, 32, seed=3)
    t = encode_targets(ds.boxes, [lab - 1 for lab in ds.labels], 3, 32, 4)
    got = detection_metrics(3, 32)({"scores": t["scores"], "boxes": np.nan_to_num(t["boxes"])},
                                   t)
    assert got["map_50"] == pytest.approx(1.0) and got["coco_map"] == pytest.approx(1.0)
