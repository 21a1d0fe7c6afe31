"""The graphcnn command: help, argument errors (never a traceback), train and demo."""
import textwrap

import pytest

from graphcnn.cli import build_parser, main
from graphcnn.commands.common import load_model

pytest.importorskip("sklearn")

USER_MODEL = textwrap.dedent("""
    import graphcnn as gc
    from graphcnn import nn

    def small():
        gc.manual_seed(1)
        x = gc.Input((1, 32, 32), name="image")
        h = gc.tanh(nn.Linear(32 * 32, 16, name="fc1")(gc.flatten(x)))
        return gc.Model(inputs=x, outputs=nn.Linear(16, 10, name="fc2")(h), name="small")

    def not_a_model():
        return 42

    def broken():
        raise RuntimeError("oops")
""")


def run(capsys, *argv):
    """main's exit status (argparse exits through SystemExit) and its output."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_lists_the_commands(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "demo" in out and "train" in out


def test_subcommand_help(capsys):
    code, out, _ = run(capsys, "train", "--help")
    assert code == 0
    for option in ("--dataset", "--optimizer", "--schedule", "--augment", "--checkpoint",
                   "--weight-decay", "--momentum", "--backend"):
        assert option in out


@pytest.mark.parametrize("argv, message", [
    ([], "required"),
    (["fly"], "invalid choice"),
    (["train", "lenet5", "--epochs", "0"], "positive integer"),
    (["train", "lenet5", "--batch-size", "x"], "positive integer"),
    (["train", "lenet5", "--lr", "-1"], ">= 0"),
    (["train", "lenet5", "--optimizer", "rmsprop"], "invalid choice"),
    (["train", "lenet5", "--schedule", "linear"], "invalid choice"),
    (["train", "nosuchnet", "--epochs", "1"], "unknown model"),
    (["train", "lenet5", "--dataset", "cifar99"], "unknown dataset"),
    (["train", "missing_file.py:f"], "does not exist"),
])
def test_bad_arguments_are_argparse_errors(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert "usage:" in err and message in err
    assert "Traceback" not in err


def test_bad_model_files(tmp_path, capsys):
    path = tmp_path / "user_model.py"
    path.write_text(USER_MODEL)
    for func, message in (("nope", "has no function 'nope'"),
                          ("not_a_model", "not a graphcnn Model"),
                          ("broken", "RuntimeError: oops")):
        code, _, err = run(capsys, "train", f"{path}:{func}", "--epochs", "1")
        assert code == 2 and message in err and "Traceback" not in err
    bad = tmp_path / "syntax.py"
    bad.write_text("def f(:\n")
    code, _, err = run(capsys, "train", f"{bad}:f")
    assert code == 2 and "SyntaxError" in err


def test_load_model_from_a_file(tmp_path):
    path = tmp_path / "user_model.py"
    path.write_text(USER_MODEL)
    model = load_model(f"{path}:small")
    assert model.name == "small" and model.num_parameters() == 32 * 32 * 16 + 16 + 170


def test_train_a_user_model_with_options(tmp_path, capsys):
    path = tmp_path / "user_model.py"
    path.write_text(USER_MODEL)
    ckpt = tmp_path / "run"
    argv = ["train", f"{path}:small", "--epochs", "2", "--batch-size", "64", "--lr", "0.01",
            "--optimizer", "adam", "--schedule", "cosine", "--checkpoint", str(ckpt),
            "--out", str(tmp_path), "--quiet"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "test accuracy" in out and "confusion matrix" in out and "macro F1" in out
    assert (tmp_path / "run.ckpt").exists() and (tmp_path / "curves.png").exists()
    # running again resumes from the finished checkpoint: nothing left to train
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "test accuracy" in out


@pytest.mark.parametrize("schedule", ["step", "exponential", "cyclic", "plateau"])
def test_every_schedule_builds(schedule):
    import graphcnn as gc
    from graphcnn.commands.train import make_schedule
    sched = make_schedule(schedule, 0.1, 10, 20)
    sched.bind(gc.optim.SGD(lr=0.1))


def test_parser_has_room_for_more_commands():
    parser = build_parser()
    sub = parser._subparsers._group_actions[0]
    assert {"demo", "train"} <= set(sub.choices)


def test_short_demo_run(tmp_path, capsys):
    """The demo end to end for one epoch (the full 20-epoch run is measured in the report)."""
    code, out, err = run(capsys, "demo", "--epochs", "1", "--out", str(tmp_path), "--quiet")
    assert code == 0, err
    assert "test accuracy" in out and "confusion matrix" in out and "total wall time" in out
    assert (tmp_path / "lenet5_digits_curves.png").stat().st_size > 1000
