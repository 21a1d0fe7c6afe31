"""The segment demo's code on a tiny configuration (seconds): `graphcnn demo --task segment`
end to end (loss falls, metrics printed, the PNG written), the pieces' shapes, and the
overlay picture."""
import numpy as np
import pytest

import graphcnn.demos.segment as segment
from graphcnn.cli import main
from graphcnn.demos import TASKS

TINY = segment.SegmentConfig(size=16, n_train=48, n_test=8, base_width=2, epochs=4,
                             batch_size=8, lr=0.01)


def test_segment_is_a_demo_task():
    assert "segment" in TASKS


def test_tiny_training_run_loss_falls_and_shapes(tmp_path):
    result = segment.train_segmenter(TINY, verbose=False)
    losses = result.history.history["loss"]
    assert len(losses) == TINY.epochs and losses[-1] < losses[0]
    assert result.predicted.shape == (8, 16, 16) and result.predicted.dtype.kind == "i"
    assert result.masks.shape == (8, 16, 16) and result.images.shape == (8, 3, 16, 16)
    assert result.predicted.min() >= 0 and result.predicted.max() < 4
    m = result.metrics
    assert 0.0 <= m["pixel_accuracy"] <= 1.0 and m["iou"].shape == (4,)
    text = segment.report(m, result.class_names)
    assert "mIoU" in text and "IoU triangle" in text
    png = segment.plot_segmentation(result.images, result.masks, result.predicted,
                                    tmp_path / "masks.png", result.class_names, count=3)
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_the_command_on_a_tiny_configuration(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(segment, "CONFIG", TINY)
    try:
        code = main(["demo", "--task", "segment", "--epochs", "2", "--out", str(tmp_path),
                     "--quiet"])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr().out
    assert code == 0, out
    assert "pixel accuracy" in out and "mIoU" in out and "IoU circle" in out
    assert (tmp_path / "unet_shapes_masks.png").stat().st_size > 1000


def test_overlay_tints_only_the_foreground():
    image = np.full((3, 2, 2), 0.5, np.float32)
    mask = np.array([[0, 1], [2, 3]])
    picture = segment.overlay(image, mask)
    assert picture.shape == (2, 2, 3)
    np.testing.assert_allclose(picture[0, 0], 0.5)                  # background: grey
    np.testing.assert_allclose(picture[0, 1], 0.3 * 0.5 + 0.7 * segment.COLOURS[1])


def test_masks_that_do_not_fit_are_one_line_errors():
    import graphcnn as gc
    ds = gc.data.shapes(48, 16, seed=0)
    gc.manual_seed(0)
    model = gc.models.unet(3, 4, base_width=2, input_size=16)
    trainer = gc.Trainer(model, loss="pixel_cross_entropy")
    for masks, message in ((np.zeros((48, 16, 15), np.int64), r"labels of shape \(48, 16, 16\)"),
                           (np.zeros((47, 16, 16), np.int64), "y has 47 samples but X has 48"),
                           (np.where(ds.masks == 3, 4, ds.masks), r"labels \[4\].*outside \[0, 4\)")):
        with pytest.raises(ValueError, match=message) as err:
            trainer.fit(ds.images, masks, epochs=1, batch_size=8, verbose=False)
        assert "\n" not in str(err.value)
