"""`graphcnn compile MODEL` on a zoo name, an exported .onnx file and a user's file; the
zoo options the CLI passes from the data (in_channels, input_size)."""
import textwrap

import pytest

import graphcnn as gc
from graphcnn.cli import main
from graphcnn.commands.common import CommandError, load_model

SUMMARY = ("model ", "inputs ", "outputs ", "target ", "ops ", "before the passes",
           "kernels", "memory ", "peak", "naive", "lower bound", "compile ")


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_compile_a_zoo_model(capsys):
    code, out, err = run(capsys, "compile", "lenet5", "--batch-size", "3", "--opt-level", "1")
    assert code == 0, err
    for part in SUMMARY:
        assert part in out
    assert "lenet5 (61,706 parameters)" in out
    assert "image (1, 32, 32) per sample" in out and "(3, 10)" in out
    assert "cpu, batch size 3, opt level 1" in out


def test_compile_an_onnx_file(tmp_path, capsys):
    pytest.importorskip("onnx")
    gc.manual_seed(0)
    path = gc.onnx.save(gc.models.resnet18(num_classes=10, width=8, input_size=32),
                        tmp_path / "r18.onnx")
    code, out, err = run(capsys, "compile", str(path), "--batch-size", "2")
    assert code == 0, err
    for part in SUMMARY:
        assert part in out
    assert "resnet18 (178,562 parameters)" in out and "(2, 10)" in out


def test_compile_a_user_file(tmp_path, capsys):
    path = tmp_path / "net.py"
    path.write_text(textwrap.dedent("""
        import graphcnn as gc
        from graphcnn import nn

        def net():
            x = gc.Input((4,), name="x")
            return gc.Model(x, nn.Linear(4, 2, name="fc")(x), name="tiny")
    """))
    code, out, err = run(capsys, "compile", f"{path}:net", "--backend", "reference")
    assert code == 0, err
    assert "tiny (10 parameters)" in out and "reference, batch size 1" in out


@pytest.mark.parametrize("make, message", [
    (lambda tmp: str(tmp / "absent.onnx"), "does not exist"),
    (lambda tmp: (tmp / "junk.onnx").write_bytes(b"\x08\x01junk" * 10) and str(tmp / "junk.onnx"),
     "OnnxImportError"),
    (lambda tmp: "nosuchnet", "unknown model"),
])
def test_compile_errors_are_argparse_errors(tmp_path, capsys, make, message):
    pytest.importorskip("onnx")
    code, _, err = run(capsys, "compile", make(tmp_path))
    # 2: a mistake in the command line; 1: a file that cannot be used
    assert code in (1, 2) and message in err and "Traceback" not in err


def test_bad_opt_level(capsys):
    code, _, err = run(capsys, "compile", "lenet5", "--opt-level", "7")
    assert code == 2 and "invalid choice" in err


def test_load_model_passes_the_data_shape_to_zoo_models():
    lenet = load_model("lenet5", 10, in_channels=1, input_size=32)
    assert lenet.inputs[0].shape == (None, 1, 32, 32)
    resnet = load_model("resnet18", 10, in_channels=1, input_size=32)
    assert resnet.parameters()["conv1.weight"].shape == (64, 1, 7, 7)
    assert resnet.inputs[0].shape == (None, 1, 32, 32)
    with pytest.raises(CommandError, match="an .onnx file"):
        load_model("resnet9")


def test_lenet5_options():
    assert gc.models.get_model("lenet5", input_size=32).num_parameters() == 61_706
    wide = gc.models.lenet5(num_classes=4, in_channels=3, input_size=(36, 40))
    assert wide.parameters()["c1.weight"].shape == (6, 3, 5, 5)
    assert wide.parameters()["f6.weight"].shape == (84, 120 * 2 * 3)
    for bad, message in ((dict(input_size=28), "at least 32"), (dict(in_channels=0), "in_channels"),
                         (dict(num_classes=0), "num_classes"), (dict(input_size=(32,)), "input_size")):
        with pytest.raises(ValueError, match=message):
            gc.models.lenet5(**bad)
