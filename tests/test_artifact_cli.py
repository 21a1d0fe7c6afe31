"""graphcnn compile -o / run / inspect on artifacts (issue 6)."""
import re

import numpy as np
import pytest

import graphcnn as gc
from graphcnn.cli import main


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    np.save(root / "x.npy", x)
    np.save(root / "labels.npy", np.array([3, 7]))
    return root


def test_compile_run_inspect(files, capsys):
    artifact = files / "lenet5.gcnn"
    code, out, err = run(capsys, "compile", "lenet5", "--batch-size", 2, "-o", artifact)
    assert code == 0, err
    assert "artifact    " in out and "inference" in out and "precompiled kernel entries" in out
    code, out, err = run(capsys, "run", artifact, "--input", files / "x.npy",
                         "--output", files / "y.npy")
    assert code == 0, err
    assert "precompiled code" in out
    y = np.load(files / "y.npy")
    assert y.shape == (2, 10)
    # The same as loading it in Python, and as describing it on stdout.
    assert np.array_equal(gc.load(artifact)(np.load(files / "x.npy")), y)
    code, out, err = run(capsys, "run", artifact, "--input", f"image={files / 'x.npy'}")
    assert code == 0 and "output0: float32[2, 10]" in out and "arg-max per row" in out
    code, out, err = run(capsys, "inspect", artifact)
    assert code == 0, err
    for part in ("inference 'lenet5'", "this machine runs it", "kernels in schedule order",
                 "memory plan:", "report:", "precompiled kernel entries"):
        assert part in out


def test_training_artifact_from_the_command_line(files, capsys):
    artifact = files / "step.gcnn"
    code, out, err = run(capsys, "compile", "lenet5", "--batch-size", 2, "--training",
                         "--loss", "cross_entropy", "-o", artifact)
    assert code == 0, err
    assert "training step" in out
    code, out, err = run(capsys, "run", artifact, "--input", files / "x.npy", "--target",
                         files / "labels.npy", "--output", files / "grads.npz")
    assert code == 0, err
    loss = float(out.split("loss: ")[1].split()[0])
    step = gc.load(artifact)
    expected, grads = step(np.load(files / "x.npy"), np.load(files / "labels.npy"))
    assert loss == pytest.approx(expected, rel=1e-5)
    saved = np.load(files / "grads.npz")
    assert np.array_equal(saved["grad:c1.weight"], grads["c1.weight"])
    code, _, err = run(capsys, "run", artifact, "--input", files / "x.npy")
    assert code == 2 and "needs --target" in err


@pytest.mark.parametrize("argv, message", [
    (("run", "{root}/missing.gcnn", "--input", "{root}/x.npy"), "no such artifact"),
    (("run", "{root}/x.npy", "--input", "{root}/x.npy"),
     "ArtifactError: .*not a graphcnn artifact"),
    (("run", "{root}/lenet5.gcnn", "--input", "{root}/labels.npy"), "expects float32 of shape"),
    (("run", "{root}/lenet5.gcnn", "--input", "{root}/nothing.npy"), "does not exist"),
    (("run", "{root}/lenet5.gcnn", "--input", "{root}/x.npy", "--input", "{root}/x.npy"),
     "2 inputs given"),
    (("compile", "lenet5", "--backend", "reference", "-o", "{root}/r.gcnn"), "only the cpu"),
])
def test_errors_are_one_line_messages(files, capsys, argv, message):
    if not (files / "lenet5.gcnn").exists():
        gc.compile(gc.models.lenet5(), batch_size=2).save(files / "lenet5.gcnn")
    code, out, err = run(capsys, *(a.format(root=files) for a in argv))
    # 2: a mistake in the command line; 1: a file that cannot be used
    assert code in (1, 2) and "Traceback" not in err
    assert re.search(message, err), err
