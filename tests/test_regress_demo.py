"""The regression job end to end on tiny configurations: `graphcnn demo --task regress`
(loss falls, predictions of the right shape in the targets' units, the scatter PNG),
regression targets in a user's .npz, and `graphcnn train ... --loss mse` on them, with
clear errors for integer/float mismatches."""
import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphcnn as gc
from graphcnn.cli import main
from graphcnn.data import DatasetError, load_npz
from graphcnn.demos import regress
from graphcnn.metrics import regression_metrics
from graphcnn.train.normalize import TargetScaler

TINY = regress.Config(n_train=64, n_test=24, image_size=16, width=4, stages=2)


def cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def demo_args(out, epochs=4):
    return argparse.Namespace(out=str(out), seed=0, epochs=epochs, batch_size=16, lr=0.01,
                              backend="cpu", quiet=True, on_nonfinite="raise",
                              on_divergence="warn", augment=None)


def test_target_scaler_round_trip():
    t = np.array([[1.0, 0.2], [3.0, 0.2], [2.0, 0.2]], np.float32)
    scaler = TargetScaler.fit(t)
    z = scaler.transform(t)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(z[:, 0].std(), 1, rtol=1e-6)
    assert np.all(z[:, 1] == 0)                      # a constant target: std taken as 1
    np.testing.assert_allclose(scaler.inverse(z), t, rtol=1e-6)
    with pytest.raises(ValueError, match="finite targets"):
        TargetScaler.fit(np.array([[np.nan]]))


def test_demo_trains_predicts_and_reports(tmp_path, capsys):
    result = regress.train_and_predict(demo_args(tmp_path), TINY)
    loss = result.history.history["loss"]
    assert len(loss) == 4 and loss[-1] < 0.8 * loss[0]
    assert result.names == ["count", "area_fraction"]
    assert result.y_pred.shape == result.y_true.shape == (24, 2)
    assert result.y_pred.dtype == np.float32 and np.all(np.isfinite(result.y_pred))
    # back in the targets' units: near the count's 1..3 and the area's 0..1, not near 0
    assert 1.0 < result.y_pred[:, 0].mean() < 3.0 and 0 < result.y_pred[:, 1].mean() < 0.6
    expected = gc.data.shapes(24, 16, seed=1)   # the held-out set: seed 1
    np.testing.assert_array_equal(result.y_true, expected.targets)
    for k, name in enumerate(result.names):
        assert result.metrics[name] == regression_metrics(expected.targets[:, k],
                                                          result.y_pred[:, k])
    capsys.readouterr()


def test_demo_command_writes_the_scatter(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(regress, "FULL", TINY)
    code, out, err = cli(capsys, "demo", "--task", "regress", "--epochs", "2",
                         "--batch-size", "16", "--out", str(tmp_path / "pics"), "--quiet")
    assert code == 0, err
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()
            if line.startswith(("count ", "area_fraction "))}
    assert set(rows) == {"count", "area_fraction"}
    assert all(len(v) == 3 and all(np.isfinite(float(x)) for x in v) for v in rows.values())
    png = tmp_path / "pics" / "regress_shapes.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "predicted vs true" in out and "Traceback" not in err


# ---- a user's .npz with regression targets, and `graphcnn train` ----------------------
def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


@pytest.fixture(scope="module")
def shapes16():
    return gc.data.shapes(48, 16, seed=0)


def test_npz_float_targets_are_regression_targets(tmp_path, shapes16):
    X, t = shapes16.images, shapes16.targets
    path = write_npz(tmp_path / "r.npz", x_train=X[:40], y_train=t[:40].astype(np.float64),
                     x_test=X[40:], y_test=t[40:])
    (Xa, ya), (Xb, yb) = load_npz(path)
    assert ya.dtype == yb.dtype == np.float32 and ya.shape == (40, 2) and yb.shape == (8, 2)
    (_, ya), (_, yb) = load_npz(write_npz(tmp_path / "one.npz", x=X, y=t[:, 1]))
    assert ya.ndim == 1 and len(ya) + len(yb) == 48


@pytest.mark.parametrize("make, message", [
    (lambda X, t: {"x_train": X, "y_train": t, "x_test": X[:4], "y_test": np.arange(4)},
     "y_train holds float targets of shape (48, 2) but y_test holds integer class labels"),
    (lambda X, t: {"x_train": X, "y_train": t, "x_test": X[:4], "y_test": t[:4, :1]},
     "but y_test holds float targets of shape (4, 1)"),
    (lambda X, t: {"x_train": X, "y_train": t[:, :, None]},
     "float regression targets must be (N,) or (N, K)"),
    (lambda X, t: {"x_train": X, "y_train": t * np.float32("inf")}, "non-finite targets"),
    (lambda X, t: {"x_train": X, "y_train": t.astype(bool)}, "expected integer class labels"),
])
def test_npz_target_errors(tmp_path, shapes16, make, message):
    path = write_npz(tmp_path / "bad.npz", **make(shapes16.images, shapes16.targets))
    with pytest.raises(DatasetError, match=re.escape(message)):
        load_npz(path)


def test_train_regressor_on_a_user_npz(tmp_path, capsys, shapes16):
    X, t = shapes16.images, shapes16.targets
    data = write_npz(tmp_path / "shapes.npz", x_train=X[:32], y_train=t[:32], x_test=X[32:],
                     y_test=t[32:])
    code, out, err = cli(capsys, "train", "cnn_regressor", "--dataset", data, "--loss", "mse",
                         "--optimizer", "adam", "--lr", "0.01", "--epochs", "2",
                         "--batch-size", "16", "--quiet")
    assert code == 0, err
    assert "regression on 2 target(s), loss mse" in out and "TargetScaler(mean=" in out
    lines = [line.split() for line in out.splitlines() if line[:1] in ("0", "1")]
    assert [row[0] for row in lines] == ["0", "1"] and all(len(row) == 4 for row in lines)
    assert "test accuracy" not in out
    # the default loss for float targets is mse; one target (N,) trains one output
    data1 = write_npz(tmp_path / "one.npz", x_train=X[:32], y_train=t[:32, 1],
                      x_test=X[32:], y_test=t[32:, 1])
    code, out, err = cli(capsys, "train", "cnn_regressor", "--dataset", data1, "--epochs", "1",
                         "--batch-size", "16", "--quiet")
    assert code == 0, err
    assert "regression on 1 target(s), loss mse" in out


def test_train_loss_and_target_mismatches_are_clear(tmp_path, capsys, shapes16):
    X, t = shapes16.images, shapes16.targets
    data = write_npz(tmp_path / "float.npz", x_train=X, y_train=t)
    code, _, err = cli(capsys, "train", "cnn_regressor", "--dataset", data, "--loss",
                       "cross_entropy")
    assert code == 2 and "Traceback" not in err
    assert ("--loss cross_entropy takes integer class labels, but the training targets of "
            f"--dataset {data} are float targets of shape (38, 2)") in err
    code, _, err = cli(capsys, "train", "cnn_regressor", "--dataset", data, "--loss", "msee")
    assert code == 2 and "--loss msee: unknown loss; expected one of" in err and "mse" in err


def test_example_script_runs(tmp_path):
    """examples/regress_shapes.py (the guide quotes it) on a tiny configuration."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root))
    done = subprocess.run([sys.executable, str(root / "examples" / "regress_shapes.py"),
                           "--n", "64", "--size", "16", "--epochs", "1", "--width", "4",
                           "--out", str(tmp_path / "r.png")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert "count" in done.stdout and "area_fraction" in done.stdout and "R^2" in done.stdout
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
