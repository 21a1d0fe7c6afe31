"""gc.data.shapes (the procedural dataset), gc.data.load_npz and ``graphcnn train --dataset
data.npz``, and the preview example."""
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphcnn as gc
from graphcnn.cli import main
from graphcnn.data import DatasetError, load_npz
from graphcnn.errors import ArgumentError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ds():
    return gc.data.shapes(64, size=32, seed=3, max_shapes=4)


def test_shapes_dtypes_and_ranges(ds):
    n, size = 64, 32
    assert len(ds) == n
    assert ds.images.shape == (n, 3, size, size) and ds.images.dtype == np.float32
    assert ds.images.flags.c_contiguous
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    assert ds.masks.shape == (n, size, size) and ds.masks.dtype == np.int64
    assert set(np.unique(ds.masks)) == {0, 1, 2, 3}
    assert ds.targets.shape == (n, 2) and ds.targets.dtype == np.float32
    assert ds.dominant.shape == (n,) and ds.dominant.dtype == np.int64
    assert ds.class_names == ("background", "circle", "rectangle", "triangle")
    assert len(ds.boxes) == len(ds.labels) == n
    for boxes, labels in zip(ds.boxes, ds.labels):
        assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4)
        assert labels.dtype == np.int64 and 1 <= len(labels) <= 4
        assert set(labels.tolist()) <= {1, 2, 3}


def test_masks_boxes_labels_and_targets_agree(ds):
    for i, (boxes, labels) in enumerate(zip(ds.boxes, ds.labels)):
        mask = ds.masks[i]
        present = set(np.unique(mask).tolist()) - {0}
        assert present == set(labels.tolist())          # each kept shape is visible
        x1, y1, x2, y2 = boxes.T
        assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= 32).all() and (y2 <= 32).all()
        assert (x1 <= x2).all() and (y1 <= y2).all()
        sides = np.stack([x2 - x1, y2 - y1], axis=1)   # sizes in [0.2, 0.5] of 32 pixels
        assert (sides.max(axis=1) >= 0.2 * 32 - 1e-3).all() and (sides <= 16 + 1e-3).all()
        # each class's visible pixels lie inside the union of that class's boxes
        for c in present:
            rows, cols = np.nonzero(mask == c)
            inside = np.zeros(rows.shape, bool)
            for (a, b, cc, d) in boxes[labels == c]:
                inside |= (cols + 0.5 >= a) & (cols + 0.5 <= cc) & (rows + 0.5 >= b) \
                    & (rows + 0.5 <= d)
            assert inside.all()
        assert ds.targets[i, 0] == len(labels)
        assert ds.targets[i, 1] == pytest.approx((mask > 0).mean(), abs=1e-6)
        counts = [(mask == c).sum() for c in (1, 2, 3)]
        assert ds.dominant[i] == int(np.argmax(counts))


def test_shapes_stand_out_from_the_background(ds):
    """A pixel of a shape is brighter than the dark background in some channel."""
    clean = gc.data.shapes(16, size=32, seed=3, noise=0.0)
    fg = clean.masks > 0
    brightest = clean.images.max(axis=1)
    assert brightest[fg].min() >= 0.6 and brightest[~fg].max() <= 0.45


def test_deterministic_per_seed_and_different_across_seeds():
    a, b = gc.data.shapes(8, 24, seed=5), gc.data.shapes(8, 24, seed=5)
    c = gc.data.shapes(8, 24, seed=6)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    assert all(np.array_equal(p, q) for p, q in zip(a.boxes, b.boxes))
    assert not np.array_equal(a.masks, c.masks)
    assert np.array_equal(gc.data.shapes(8, 24, seed=5).targets, a.targets)


def test_sets_larger_than_a_chunk():
    """Images are rendered 256 at a time: those past the first chunk are as consistent."""
    a, b = gc.data.shapes(300, 16, seed=4), gc.data.shapes(300, 16, seed=4)
    assert np.array_equal(a.images, b.images)
    assert not np.array_equal(a.images[:44], a.images[256:])
    for mask, labels, target in zip(a.masks[250:], a.labels[250:], a.targets[250:]):
        assert set(np.unique(mask).tolist()) - {0} == set(labels.tolist())
        assert target[1] == pytest.approx((mask > 0).mean(), abs=1e-6)


def test_occlusion_drops_hidden_shapes_and_keeps_full_boxes():
    ds = gc.data.shapes(200, 32, seed=0, max_shapes=6, min_shapes=6, min_visible=0.5)
    dropped = [6 - len(lab) for lab in ds.labels]
    assert max(dropped) > 0 and min(len(lab) for lab in ds.labels) >= 1
    for i, (boxes, labels) in enumerate(zip(ds.boxes, ds.labels)):
        for box, label in zip(boxes, labels):
            x1, y1, x2, y2 = box
            window = ds.masks[i, int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))]
            assert (window == label).any()


def test_min_visible_zero_still_drops_wholly_hidden_shapes():
    ds = gc.data.shapes(100, 24, seed=2, max_shapes=8, min_shapes=8, min_visible=0.0)
    assert min(len(lab) for lab in ds.labels) < 8      # some were hidden entirely
    for mask, labels in zip(ds.masks, ds.labels):
        assert set(np.unique(mask).tolist()) - {0} == set(labels.tolist())


def test_one_channel_and_small_images():
    ds = gc.data.shapes(5, size=8, seed=1, channels=1, noise=0.0)
    assert ds.images.shape == (5, 1, 8, 8) and (ds.masks > 0).any(axis=(1, 2)).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0}, "n must be greater than zero"),
    ({"n": 2.5}, "n must be a positive int"),
    ({"n": 2, "size": 4}, "size must be at least 8"),
    ({"n": 2, "max_shapes": 0}, "max_shapes must be greater than zero"),
    ({"n": 2, "min_shapes": 4}, "min_shapes must be at most max_shapes"),
    ({"n": 2, "max_size": 1.5}, "max_size must be in (0, 1]"),
    ({"n": 2, "min_size": 0.6}, "min_size must be in (0, 0.5]"),
    ({"n": 2, "size": 16, "min_size": 0.1}, "at least 4 pixels"),
    ({"n": 2, "noise": -0.1}, "noise must be >= 0"),
    ({"n": 2, "channels": 2}, "channels must be 1 or 3"),
    ({"n": 2, "seed": -1}, "seed must be non-negative"),
])
def test_argument_errors(kwargs, message):
    with pytest.raises(ArgumentError, match="gc.data.shapes: ") as info:
        gc.data.shapes(**kwargs)
    assert message in str(info.value)


def test_load_shapes_is_a_classification_split():
    from graphcnn.commands.common import load_dataset
    (X, y), (Xt, yt) = load_dataset("shapes")
    assert X.shape[1:] == (3, 32, 32) and set(np.unique(y)) == {0, 1, 2}
    assert len(Xt) < len(X) and not np.array_equal(X[: len(Xt)], Xt)


# ---- a user's .npz --------------------------------------------------------------------
def _arrays(n=24, size=32):
    ds = gc.data.shapes(n, size, seed=0, channels=1)
    return ds.images, ds.dominant


def test_load_npz_keys_and_split(tmp_path):
    X, y = _arrays()
    np.savez(tmp_path / "a.npz", x_train=X[:20], y_train=y[:20], x_test=X[20:],
             y_test=y[20:].astype(np.uint8))
    (Xa, ya), (Xb, yb) = load_npz(tmp_path / "a.npz")
    assert np.array_equal(Xa, X[:20]) and yb.dtype == np.int64 and len(Xb) == 4
    np.savez_compressed(tmp_path / "b.npz", x=X[:, 0].astype(np.float64), y=y)
    (Xa, ya), (Xb, yb) = load_npz(tmp_path / "b.npz")
    assert Xa.shape == (19, 1, 32, 32) and Xa.dtype == np.float32 and len(Xb) == 5
    assert sorted(np.concatenate([ya, yb]).tolist()) == sorted(y.tolist())


BAD_FILES = {
    "missing_y": (lambda X, y: {"x_train": X}, "has no array 'y_train'"),
    "missing_y_test": (lambda X, y: {"x_train": X, "y_train": y, "x_test": X},
                       "has no array 'y_test'"),
    "int_images": (lambda X, y: {"x_train": (X * 255).astype(np.uint8), "y_train": y},
                   "x_train has dtype uint8; images must be float"),
    "bool_labels": (lambda X, y: {"x_train": X, "y_train": y.astype(bool)},
                    "y_train has dtype bool; expected integer class labels"),
    "lengths": (lambda X, y: {"x_train": X, "y_train": y[:-1]},
                "x_train has 24 images but y_train has 23 labels"),
    "test_lengths": (lambda X, y: {"x_train": X, "y_train": y, "x_test": X, "y_test": y[:3]},
                     "x_test has 24 images but y_test has 3 labels"),
    "test_shape": (lambda X, y: {"x_train": X, "y_train": y, "x_test": X[:, :, :16],
                                 "y_test": y}, "x_test's images are"),
    "negative": (lambda X, y: {"x_train": X, "y_train": y - 1}, "negative label"),
    "huge": (lambda X, y: {"x_train": X, "y_train": y.astype(np.uint64) + np.uint64(2**63)},
             "too large for int64"),
    "label_shape": (lambda X, y: {"x_train": X, "y_train": y[:, None]},
                    "class labels must be 1-D"),
    "image_shape": (lambda X, y: {"x_train": X[:, 0, 0], "y_train": y},
                    "images must be (N, C, H, W)"),
    "both": (lambda X, y: {"x_train": X, "y_train": y, "x": X, "y": y},
             "has both x_train and x"),
    "nan": (lambda X, y: {"x_train": X * np.float32("nan"), "y_train": y}, "non-finite"),
    "objects": (lambda X, y: {"x_train": np.array([None] * 24, dtype=object), "y_train": y},
                "holds Python objects"),
}


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


USER_MODEL = textwrap.dedent("""
    import graphcnn as gc
    from graphcnn import nn

    def tiny():
        gc.manual_seed(0)
        x = gc.Input((1, 32, 32), name="image")
        return gc.Model(inputs=x, outputs=nn.Linear(32 * 32, 3)(gc.flatten(x)), name="tiny")
""")


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_npz_is_one_line_naming_the_key(tmp_path, capsys, name):
    make, message = BAD_FILES[name]
    path = tmp_path / f"{name}.npz"
    np.savez(path, **make(*_arrays()))
    with pytest.raises(DatasetError, match=re.escape(message)):
        load_npz(path)
    code, out, err = run(capsys, "train", "lenet5", "--dataset", str(path), "--quiet")
    assert code == 1 and "Traceback" not in err
    assert err.strip().count("\n") == 0 and message in err and str(path) in err


def test_npz_that_is_not_an_archive(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.zeros(3))
    (tmp_path / "a.npy").rename(tmp_path / "one.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    for name, message in (("one.npz", "is an .npy array, not an .npz"),
                          ("junk.npz", "is not an .npz archive")):
        code, _, err = run(capsys, "train", "lenet5", "--dataset", str(tmp_path / name))
        assert code == 1 and message in err and "Traceback" not in err
    code, _, err = run(capsys, "train", "lenet5", "--dataset", str(tmp_path / "none.npz"))
    assert code == 2 and "does not exist" in err


def test_npz_member_over_the_size_limit(tmp_path, monkeypatch):
    X, y = _arrays()
    np.savez(tmp_path / "big.npz", x_train=X, y_train=y)
    monkeypatch.setenv("GRAPHCNN_MAX_TENSOR_BYTES", "1K")
    with pytest.raises(DatasetError, match="GRAPHCNN_MAX_TENSOR_BYTES"):
        load_npz(tmp_path / "big.npz")


def test_train_on_a_user_npz(tmp_path, capsys):
    X, y = _arrays(48)
    np.savez(tmp_path / "data.npz", x_train=X[:32], y_train=y[:32], x_test=X[32:],
             y_test=y[32:])
    model = tmp_path / "tiny.py"
    model.write_text(USER_MODEL)
    code, out, err = run(capsys, "train", f"{model}:tiny", "--dataset",
                         str(tmp_path / "data.npz"), "--epochs", "1", "--batch-size", "16",
                         "--quiet")
    assert code == 0, err
    assert "test accuracy" in out and "confusion matrix" in out


def test_preview_example_writes_a_png(tmp_path):
    out = tmp_path / "preview.png"
    subprocess.run([sys.executable, str(ROOT / "examples" / "shapes_preview.py"), str(out),
                    "--n", "3", "--size", "32"], check=True, cwd=tmp_path, timeout=120,
                   env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 2000
