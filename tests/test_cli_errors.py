"""Every subcommand through a table of a careless user's mistakes: each ends with a
non-zero exit status and one line ``graphcnn <command>: error: <message>`` (after
argparse's usage block for mistakes in the command line), never a traceback; the output
paths are checked before any work starts; ``--debug`` shows the traceback.

Run in-process (cli.main with argv) on tiny models so the file stays fast.
"""
import json
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphcnn as gc
from graphcnn.cli import build_parser, main

pytest.importorskip("sklearn")

USER_MODEL = textwrap.dedent("""
    import graphcnn as gc
    from graphcnn import nn

    def small():
        gc.manual_seed(1)
        x = gc.Input((1, 32, 32), name="image")
        h = gc.tanh(nn.Linear(32 * 32, 8, name="fc1")(gc.flatten(x)))
        return gc.Model(inputs=x, outputs=nn.Linear(8, 10, name="fc2")(h), name="small")
""")
# a directory no one can write in, root included (Linux's sysfs)
UNWRITABLE = "/sys/graphcnn-test"


def run_cli(capsys, argv):
    """main's exit status (argparse exits through SystemExit) and its stdout, stderr."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def the_error_line(code, err, command):
    """The one error line of stderr; asserts the contract on the way."""
    assert code not in (0, None), err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    # argparse's usage block: "usage: ..." and its indented continuation lines;
    # warnings are one line each too
    rest = [line for line in lines if not line.startswith(("usage:", " "))
            and not line.startswith(f"graphcnn {command}: warning: ")]
    assert len(rest) == 1, err
    assert rest[0].startswith(f"graphcnn {command}: error: "), err
    assert "internal error" not in rest[0]
    return rest[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny user model, its artifact, inputs, corrupt files of each kind."""
    root = tmp_path_factory.mktemp("cli_errors")
    (root / "user.py").write_text(USER_MODEL)
    (root / "a_file").write_text("not a directory")
    (root / "a_dir").mkdir()
    (root / "dir.npy").mkdir()
    np.save(root / "x.npy", np.zeros((2, 1, 32, 32), np.float32))
    (root / "corrupt.npy").write_bytes(b"\x93NUMPY garbage")
    (root / "corrupt.onnx").write_bytes(b"\x08\x01junk" * 10)
    (root / "corrupt.gcnn").write_bytes(b"PK\x03\x04" + os.urandom(200))
    spec = f"{root / 'user.py'}:small"
    gc.compile(load_user_model(spec), batch_size=2).save(root / "small.gcnn")
    data = (root / "small.gcnn").read_bytes()
    (root / "truncated.gcnn").write_bytes(data[:len(data) // 2])
    try:
        import onnx
        from onnx import TensorProto, helper
        shape = ["N", 100_000, 100_000, 100_000]   # 4e15 floats per sample
        graph = helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])], "huge",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]),
                  root / "huge.onnx")
    except ImportError:
        pass
    return root


def load_user_model(spec):
    from graphcnn.commands.common import load_model
    return load_model(spec)


# checkpoint metadata fields with the wrong types (what the Trainer writes; the format's
# own fields stay intact so that the damage is found by reading the fields)
BAD_FIELDS = {
    "epoch": lambda meta: meta.update(epoch="one"),
    "optimizer": lambda meta: meta.update(optimizer=[1, 2]),
    "rng": lambda meta: meta.update(rng="junk"),
    "history": lambda meta: meta.update(history={"epoch": 1}),
}


def bad_checkpoint(root: Path, spec: str, field: str) -> str:
    """A checkpoint of the user model with one bad metadata field (or, where the metadata
    is not a separate JSON file, with damaged bytes)."""
    from graphcnn.train.trainer import Trainer
    path = root / f"ckpt_{field}" / "bad"
    if not path.parent.exists():
        path.parent.mkdir()
        Trainer(load_user_model(spec)).save_checkpoint(str(path), 1)
        written = [p for p in sorted(path.parent.rglob("*")) if p.is_file()]
        jsons = [p for p in written if p.suffix == ".json"]
        for p in jsons:
            meta = json.loads(p.read_text())
            BAD_FIELDS[field](meta)
            p.write_text(json.dumps(meta))
        for p in written if not jsons else ():
            data = bytearray(p.read_bytes())
            data[len(data) // 2:len(data) // 2 + 64] = os.urandom(64)
            p.write_bytes(bytes(data))
    return str(path)


@pytest.fixture
def no_work(monkeypatch):
    """Makes the work each command does after its checks fail loudly (an internal error,
    which the_error_line rejects): a bad path must be found before any of it."""
    def work(*args, **kwargs):
        raise AssertionError("work started before the arguments were checked")
    import graphcnn.bench.common
    import graphcnn.commands.compile
    import graphcnn.commands.inspection
    import graphcnn.commands.train
    import graphcnn.demos.classify
    monkeypatch.setattr(graphcnn.demos.classify, "load_dataset", work)
    monkeypatch.setattr(graphcnn.commands.train, "load_dataset", work)
    monkeypatch.setattr(graphcnn.commands.compile, "compile_model", work)
    monkeypatch.setattr(graphcnn.commands.inspection, "load_model", work)
    monkeypatch.setattr(graphcnn.commands.inspection, "inspect_artifact", work)
    monkeypatch.setattr(graphcnn.bench.common, "machine", work)
    monkeypatch.setattr(gc, "load", work)


def sysfs_is_read_only():
    try:
        Path(UNWRITABLE).touch()
    except OSError:
        return True
    os.unlink(UNWRITABLE)
    return False


# (command, arguments, what the message says); {root}: the files fixture's folder,
# {model}: the user model spec. Checked before any work (the no_work fixture).
PATH_MISTAKES = [
    ("demo", ["--out", "{root}/a_file"], "--out {root}/a_file exists and is not a directory"),
    ("demo", ["--out", "{root}/a_file/sub"], "a_file is a file, not a directory"),
    ("demo", ["--out", UNWRITABLE + "/curves"], "cannot write in /sys"),
    ("train", ["{model}", "--out", "{root}/a_file"], "exists and is not a directory"),
    ("train", ["{model}", "--out", "{root}/a_file/sub"], "is a file, not a directory"),
    ("train", ["{model}", "--checkpoint", UNWRITABLE + "/run"], "cannot write in /sys"),
    ("train", ["{model}", "--checkpoint", "{root}/a_file/run"], "is a file, not a directory"),
    ("compile", ["{model}", "-o", "{root}/a_dir"], "-o {root}/a_dir is a directory"),
    ("compile", ["{model}", "-o", "/no/such/dir/x.gcnn"],
     "-o /no/such/dir/x.gcnn: directory /no/such/dir does not exist"),
    ("compile", ["{model}", "-o", "{root}/a_file/x.gcnn"], "is a file, not a directory"),
    ("compile", ["{model}", "-o", UNWRITABLE + ".gcnn"], "cannot write in /sys"),
    ("run", ["{root}/small.gcnn", "--input", "{root}/x.npy", "--output", "{root}/dir.npy"],
     "--output {root}/dir.npy is a directory"),
    ("run", ["{root}/small.gcnn", "--input", "{root}/x.npy", "--output", "{root}/a_dir"],
     "must end in .npy or .npz"),
    ("run", ["{root}/small.gcnn", "--input", "{root}/x.npy", "--output", "{root}/y.txt"],
     "--output {root}/y.txt: the file name must end in .npy or .npz"),
    ("run", ["{root}/small.gcnn", "--input", "{root}/x.npy", "--output", "{root}/a_dir.npy/"],
     "expected a file name"),
    ("run", ["{root}/small.gcnn", "--input", "{root}/x.npy", "--output",
             "{root}/a_file/y.npy"], "is a file, not a directory"),
    ("inspect", ["{model}", "--dot", "{root}/a_dir"], "--dot {root}/a_dir is a directory"),
    ("inspect", ["{model}", "--png", "{root}/a_file/g.png"], "is a file, not a directory"),
    ("inspect", ["{root}/small.gcnn", "--dot", "{root}/a_file/g.dot"], "is a file"),
    ("bench", ["lenet5", "--json", "{root}/a_dir"], "--json {root}/a_dir is a directory"),
    ("bench", ["lenet5", "--png", "{root}/a_file/b.png"], "is a file, not a directory"),
    ("bench", ["lenet5", "--markdown", UNWRITABLE + "/b.md"], "cannot write in /sys"),
]

# Mistakes in numbers and options: argparse's errors, naming the flag.
ARGUMENT_MISTAKES = [
    ("demo", ["--seed", "-5"], "argument --seed: expected a seed, an integer >= 0, got -5"),
    ("demo", ["--epochs", "0"], "argument --epochs: expected a positive integer"),
    ("demo", ["--on-nonfinite", "ignore"], "argument --on-nonfinite: invalid choice"),
    ("train", ["{model}", "--seed", "-5"], "argument --seed"),
    ("train", ["{model}", "--seed", "2.5"], "argument --seed"),
    ("train", ["{model}", "--batch-size", "0"], "argument --batch-size"),
    ("train", ["{model}", "--momentum", "-1"], "argument --momentum"),
    ("train", ["{model}", "--lr", "nan"], "argument --lr"),
    ("train", ["{model}", "--on-divergence", "halt"], "argument --on-divergence"),
    ("train", ["{model}", "--optimizer", "adam", "--momentum", "0.5"],
     "--momentum is a setting of --optimizer sgd"),
    ("compile", ["{model}", "--batch-size", "-1"], "argument --batch-size"),
    ("compile", ["{model}", "--opt-level", "7"], "argument --opt-level"),
    ("run", ["{root}/small.gcnn"], "--input"),
    ("inspect", ["{model}", "--batch-size", "0"], "argument --batch-size"),
    ("bench", ["lenet5", "--threads", "0"], "argument --threads"),
    ("bench", ["lenet5", "--repeats", "-1"], "argument --repeats"),
    ("bench", ["lenet5", "--batch-size", "1,x"], "argument --batch-size"),
]

# Missing and corrupt inputs, impossible shapes, divergence: found while working.
FILE_MISTAKES = [
    ("train", ["{model}", "--dataset", "nope"], "unknown dataset"),
    ("train", ["{root}/missing.py:f"], "does not exist"),
    *[("train", ["{model}", "--checkpoint", "{bad_checkpoint_%s}" % field], "")
      for field in BAD_FIELDS],
    ("train", ["{model}", "--lr", "1e38", "--epochs", "1"], "non-finite loss ("),
    ("demo", ["--lr", "1e38", "--epochs", "1"], "non-finite loss ("),
    ("compile", ["{root}/missing.onnx"], "does not exist"),
    ("compile", ["{root}/corrupt.onnx"], "OnnxImportError"),
    ("compile", ["{root}/huge.onnx"], ""),
    ("inspect", ["{root}/huge.onnx"], ""),
    ("inspect", ["{root}/corrupt.gcnn"], "ArtifactError"),
    ("inspect", ["{root}/truncated.gcnn"], ""),
    ("run", ["{root}/missing.gcnn", "--input", "{root}/x.npy"], "no such artifact"),
    ("run", ["{root}/corrupt.gcnn", "--input", "{root}/x.npy"], "ArtifactError"),
    ("run", ["{root}/truncated.gcnn", "--input", "{root}/x.npy"], ""),
    ("run", ["{root}/a_dir", "--input", "{root}/x.npy"], ""),
    ("run", ["{root}/x.npy", "--input", "{root}/x.npy"], "not a graphcnn artifact"),
    ("run", ["{root}/small.gcnn", "--input", "{root}/corrupt.npy"], "cannot read"),
    ("run", ["{root}/small.gcnn", "--input", "{root}/missing.npy"], "does not exist"),
    ("run", ["{root}/small.gcnn", "--input", "{root}/small.gcnn"], "not an .npy array"),
    ("bench", ["nosuchnet"], "unknown model"),
]


def fill(files, argv):
    model = f"{files / 'user.py'}:small"
    subst = {"root": str(files), "model": model}
    for field in BAD_FIELDS:
        if any(f"{{bad_checkpoint_{field}}}" in a for a in argv):
            subst[f"bad_checkpoint_{field}"] = bad_checkpoint(files, model, field)
    return [a.format(**subst) for a in argv]


def ids(table):
    return [f"{cmd} {' '.join(a.replace('{root}/', '').replace('{model}', 'M') for a in argv)}"
            .replace("{", "").replace("}", "") for cmd, argv, _ in table]


def test_the_tables_cover_every_subcommand():
    sub = build_parser()._subparsers._group_actions[0]
    for table in (PATH_MISTAKES, ARGUMENT_MISTAKES, FILE_MISTAKES):
        assert {cmd for cmd, _, _ in table} == set(sub.choices)


@pytest.mark.parametrize("command, argv, message", PATH_MISTAKES, ids=ids(PATH_MISTAKES))
def test_bad_output_paths_are_found_before_any_work(files, capsys, no_work, command, argv,
                                                    message):
    if UNWRITABLE in " ".join(argv) and not sysfs_is_read_only():
        pytest.skip("needs a read-only /sys")
    argv = fill(files, argv)
    if command in ("demo", "train"):
        argv.append("--quiet")
    code, _, err = run_cli(capsys, [command] + argv)
    line = the_error_line(code, err, command)
    assert code == 2 and message.format(root=files) in line


@pytest.mark.parametrize("command, argv, message", ARGUMENT_MISTAKES,
                         ids=ids(ARGUMENT_MISTAKES))
def test_bad_arguments_name_the_flag(files, capsys, no_work, command, argv, message):
    code, _, err = run_cli(capsys, [command] + fill(files, argv))
    line = the_error_line(code, err, command)
    assert code == 2 and message in line


@pytest.mark.parametrize("command, argv, message", FILE_MISTAKES, ids=ids(FILE_MISTAKES))
def test_bad_files_and_runs_are_one_line(files, capsys, command, argv, message):
    if "huge.onnx" in argv[0] and not (files / "huge.onnx").exists():
        pytest.skip("needs the onnx package")
    argv = fill(files, argv)
    if command == "train":
        argv += ["--batch-size", "256"]
    if command in ("demo", "train"):
        argv.append("--quiet")
    code, _, err = run_cli(capsys, [command] + argv)
    assert message in the_error_line(code, err, command)


def test_divergence_advises_the_flag_not_the_python_argument(files, capsys):
    """--lr 1e38: the loss becomes NaN; the message names --on-nonfinite (which exists)."""
    argv = fill(files, ["train", "{model}", "--lr", "1e38", "--epochs", "1", "--quiet",
                        "--batch-size", "256"])
    code, _, err = run_cli(capsys, argv)
    line = the_error_line(code, err, "train")
    assert code == 1 and "--on-nonfinite skip" in line and "on_nonfinite=" not in line
    assert "try a smaller --lr" in line
    # --on-nonfinite skip: the run ends (every update skipped), with warnings, not errors
    code, out, err = run_cli(capsys, argv + ["--on-nonfinite", "skip",
                                             "--on-divergence", "ignore"])
    assert code == 0 and "test accuracy" in out and "Traceback" not in err
    assert "skipped" in err and all(line.startswith("graphcnn train: warning: ")
                                    for line in err.splitlines() if line.strip())


def test_finite_divergence_is_reported_and_on_divergence_stop_ends_the_run(files, capsys,
                                                                           tmp_path):
    argv = fill(files, ["train", "{model}", "--lr", "1e4", "--epochs", "1", "--quiet",
                        "--batch-size", "128", "--checkpoint", str(tmp_path / "run")])
    code, out, err = run_cli(capsys, argv)
    assert code == 0 and "test accuracy" in out
    assert "graphcnn train: warning: training diverged at epoch 1" in err
    assert "--on-divergence stop" in err and "Traceback" not in err
    code, out, err = run_cli(capsys, argv[:-1] + [str(tmp_path / "stopped")]
                             + ["--on-divergence", "stop"])
    line = the_error_line(code, err, "train")
    assert code == 1 and "training diverged at epoch 1" in line
    assert "stopped (--on-divergence stop)" in line
    assert not list(tmp_path.glob("stopped*"))   # the diverged parameters are not saved


def test_flags_given_when_resuming_override_the_checkpoint(files, capsys, tmp_path):
    base = fill(files, ["train", "{model}", "--quiet", "--batch-size", "256", "--checkpoint",
                        str(tmp_path / "run")])
    code, _, err = run_cli(capsys, base + ["--epochs", "1", "--lr", "0.05"])
    assert code == 0, err
    code, out, err = run_cli(capsys, base + ["--epochs", "2", "--lr", "0.001",
                                             "--momentum", "0"])
    assert code == 0, err
    assert "resuming from" in out and "after epoch 1" in out
    assert "resuming: lr 0.05 -> 0.001 (from --lr)" in out
    assert "resuming: momentum 0.9 -> 0 (from --momentum)" in out
    assert "resuming: weight decay 0 from the checkpoint" in out


def test_run_writes_exactly_the_output_name_given(files, capsys, tmp_path):
    for name in ("y.npy", "y.npz", "y.NPY"):
        out_path = tmp_path / name
        code, out, err = run_cli(capsys, ["run", files / "small.gcnn", "--input",
                                          files / "x.npy", "--output", out_path])
        assert code == 0, err
        assert f"output: {out_path}" in out
        loaded = np.load(out_path)
        array = loaded if isinstance(loaded, np.ndarray) else loaded[loaded.files[0]]
        assert array.shape == (2, 10)
    # and nothing else: no y.npy.npy, no y.npz.npz
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y.NPY", "y.npy", "y.npz"]


def test_debug_shows_the_traceback(files, capsys, monkeypatch):
    argv = ["compile", files / "corrupt.onnx"]
    pytest.importorskip("onnx")
    for how in ("flag", "env"):
        with monkeypatch.context() as m:
            if how == "env":
                m.setenv("GRAPHCNN_DEBUG", "1")
            with pytest.raises(ValueError, match="OnnxImportError|ONNX|onnx"):
                main([str(a) for a in argv] + (["--debug"] if how == "flag" else []))


def test_a_bug_is_an_internal_error_without_traceback(files, capsys, monkeypatch):
    import graphcnn.commands.compile

    def broken(args):
        raise KeyError("oops")
    monkeypatch.setattr(graphcnn.commands.compile, "compile_model", broken)
    code, _, err = run_cli(capsys, ["compile", "lenet5"])
    assert code == 70 and "Traceback" not in err
    assert err.strip() == ("graphcnn compile: internal error: KeyError: 'oops' (a bug in "
                           "graphcnn: run with --debug or GRAPHCNN_DEBUG=1 for the "
                           "traceback, and report it)")
