"""Bounded work on hostile files: ONNX import refuses, before allocating, folded constants
and declared shapes over the limits of graphcnn.limits (naming the node, the shape, the
bytes and the setting); a Conv whose kernel_shape contradicts its weight is an import
error; compiling a model whose tensors exceed the limit fails before allocating; an
artifact is read member by member, only the members it uses, each bounded by the size
its manifest implies; artifacts carry no absolute paths."""
import json
import os
import time
import tracemalloc
import zipfile

import numpy as np
import pytest

import graphcnn as gc
from graphcnn.errors import ArtifactError, LimitError

onnx = pytest.importorskip("onnx")

import hostile_files as hf  # noqa: E402

from graphcnn.onnx import OnnxImportError  # noqa: E402
from graphcnn.onnx.errors import OnnxLimitError  # noqa: E402


def bounded(fn, *args, seconds=5.0, peak_bytes=20 << 20):
    """Run fn(*args): the exception it raises, checking it was quick and small."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        fn(*args)
    except Exception as exc:
        error = exc
    else:
        error = None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.perf_counter() - start < seconds
    assert peak < peak_bytes, f"allocated {peak / 2**20:.1f} MiB"
    return error


# ---- ONNX -----------------------------------------------------------------------------------

def test_a_folded_constant_over_the_limit_is_refused_before_it_is_built():
    data = hf.constant_of_shape_onnx()          # ConstantOfShape [4e8, 4]: 6.4 GB
    assert len(data) < 200
    err = bounded(gc.onnx.load, data)
    assert isinstance(err, OnnxLimitError) and isinstance(err, LimitError)
    message = str(err)
    for part in ("ConstantOfShape", "[400000000, 4]", "6400000000 bytes",
                 "GRAPHCNN_MAX_CONSTANT_BYTES"):
        assert part in message
    assert "\n" not in message


def test_the_constant_limit_is_a_setting(monkeypatch):
    data = hf.constant_of_shape_onnx((1, 4))    # 16 bytes: fine by default
    gc.onnx.load(data)
    monkeypatch.setenv("GRAPHCNN_MAX_CONSTANT_BYTES", "8")
    with pytest.raises(OnnxLimitError, match=r"16 bytes.*GRAPHCNN_MAX_CONSTANT_BYTES"):
        gc.onnx.load(data)
    monkeypatch.setenv("GRAPHCNN_MAX_CONSTANT_BYTES", "lots")
    with pytest.raises(ValueError, match="GRAPHCNN_MAX_CONSTANT_BYTES='lots'"):
        gc.onnx.load(data)


def test_a_huge_declared_input_is_refused_at_import():
    err = bounded(gc.onnx.load, hf.huge_input_onnx())
    assert isinstance(err, OnnxLimitError)
    for part in ("input 'x'", "100000, 100000, 100000", "GRAPHCNN_MAX_TENSOR_BYTES"):
        assert part in str(err)


def test_the_cli_reports_a_huge_onnx_shape_in_one_line(tmp_path, capsys):
    from graphcnn.cli import main
    path = tmp_path / "huge.onnx"
    path.write_bytes(hf.huge_input_onnx())
    # a bad file: the work failed, exit 1 (a command-line mistake exits 2)
    assert main(["compile", str(path), "--backend", "reference"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "OnnxLimitError" in err and "GRAPHCNN_MAX_TENSOR_BYTES" in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1


def test_a_conv_whose_kernel_shape_contradicts_its_weight_is_an_import_error():
    gc.onnx.load(hf.conv_net_onnx([3, 3]))
    with pytest.raises(OnnxImportError, match=r"node 'conv1' \(Conv.*kernel_shape \[5, 5\] "
                                              r"contradicts the weight's shape \[4, 2, 3, 3\]"):
        gc.onnx.load(hf.conv_net_onnx([5, 5]))


# ---- compile ----------------------------------------------------------------------------------

def test_compiling_tensors_over_the_limit_fails_before_allocating(monkeypatch):
    x = gc.Input((1, 64, 64))                   # 16 KiB per sample
    model = gc.Model(x, gc.relu(x))
    monkeypatch.setenv("GRAPHCNN_MAX_TENSOR_BYTES", "1M")
    gc.compile(model, 64, backend="reference")  # 1 MiB: at the limit
    err = bounded(gc.compile, model, 128, "reference")
    assert isinstance(err, LimitError)
    assert "float32[128, 1, 64, 64]" in str(err) and "batch size below 128" in str(err)
    assert "GRAPHCNN_MAX_TENSOR_BYTES" in str(err)


# ---- artifacts --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    path = tmp_path_factory.mktemp("limits") / "small.gcnn"
    hf.small_artifact(str(path))
    return path


def load_bytes(tmp_path, data, name="bad.gcnn"):
    path = tmp_path / name
    path.write_bytes(data)
    return bounded(gc.load, path)


def test_an_unused_listed_member_is_refused_without_inflating_it(artifact, tmp_path):
    bad = tmp_path / "unused.gcnn"
    hf.unused_member_artifact(str(artifact), str(bad), size=64 << 20)
    assert os.path.getsize(bad) < (1 << 20)
    err = bounded(gc.load, bad, peak_bytes=8 << 20)
    assert isinstance(err, ArtifactError)
    assert "constants/unused.npy is listed in the manifest but nothing" in str(err)


def test_members_are_bounded_by_what_the_manifest_says(artifact, tmp_path):
    manifest, members = hf.read_artifact(artifact.read_bytes())
    name = next(n for n in manifest["arrays"] if n.startswith("constants/"))
    big = dict(members, **{name: np.zeros(1 << 20, np.float32).tobytes() + b"x" * 100})
    err = load_bytes(tmp_path, hf.write_artifact(json.loads(json.dumps(manifest)), big))
    assert isinstance(err, ArtifactError) and f"member {name} holds 4194404 bytes" in str(err)

    huge = json.loads(json.dumps(manifest))
    huge["arrays"][name]["shape"] = [1 << 20, 1 << 20]
    err = load_bytes(tmp_path, hf.write_artifact(huge, dict(members)))
    assert isinstance(err, ArtifactError) and "GRAPHCNN_MAX_TENSOR_BYTES" in str(err)

    arena = json.loads(json.dumps(manifest))
    arena["memory_plan"]["arena_bytes"] = 1 << 50
    err = load_bytes(tmp_path, hf.write_artifact(arena, dict(members)))
    assert isinstance(err, ArtifactError) and "larger than its buffers need" in str(err)

    orphan = json.loads(json.dumps(manifest))
    orphan["arrays"]["constants/extra.npy"] = {"shape": [1], "dtype": "float32"}
    err = load_bytes(tmp_path, hf.write_artifact(orphan, dict(members)))
    assert isinstance(err, ArtifactError) and "not used by the graph" in str(err)


def test_a_member_that_inflates_past_its_declared_size_is_cut_off(tmp_path):
    bomb = tmp_path / "bomb.gcnn"
    hf.zip_bomb_artifact(str(bomb), inflated=64 << 20, declared=100)   # 64 KiB on disk
    err = bounded(gc.load, bomb, peak_bytes=8 << 20)
    assert isinstance(err, ArtifactError) and "manifest.json is corrupted" in str(err)


def test_a_duplicated_entry_is_refused(artifact, tmp_path):
    data = artifact.read_bytes()
    path = tmp_path / "dup.gcnn"
    path.write_bytes(data)
    with pytest.warns(UserWarning, match="Duplicate name"):
        with zipfile.ZipFile(path, "a") as zf:
            zf.writestr("manifest.json", b"{}")
    with pytest.raises(ArtifactError, match="manifest.json appears twice"):
        gc.load(path)


def test_a_valid_artifact_reads_each_array_once(artifact):
    exe = gc.load(artifact)
    x = np.ones((1, 1, 4, 4), np.float32)
    assert exe(x).shape == (1, 3)


# ---- no absolute paths in artifacts -------------------------------------------------------------

def test_artifacts_carry_no_absolute_paths(artifact):
    needles = {os.getcwd(), "/work", os.path.expanduser("~"),
               os.path.dirname(os.path.dirname(os.path.abspath(gc.__file__)))}
    blobs = [artifact.read_bytes()]
    with zipfile.ZipFile(artifact) as zf:
        blobs += [zf.read(n) for n in zf.namelist()]
        manifest = json.loads(zf.read("manifest.json"))
    for blob in blobs:
        for needle in needles:
            assert needle.encode() not in blob, needle
    locations = {n["loc"] for n in manifest["graph"]["nodes"] if n["loc"]}
    assert locations and all(not os.path.isabs(loc) for loc in locations)
    assert any(loc.startswith("tests/hostile_files.py:") for loc in locations)


def test_portable_locations():
    from graphcnn.runtime.artifact.writer import portable_location
    package = os.path.dirname(os.path.abspath(gc.__file__))
    assert portable_location(os.path.join(package, "models", "resnet.py") + ":42",
                             "/somewhere/else") == "graphcnn/models/resnet.py:42"
    assert portable_location("/home/u/proj/net/model.py:7", "/home/u/proj") == "net/model.py:7"
    assert portable_location("/elsewhere/model.py:7", "/home/u/proj") == "model.py:7"
    assert portable_location("/data/m.onnx: node 'c' (Conv, opset 13)", "/home/u") == \
        "m.onnx: node 'c' (Conv, opset 13)"
    assert portable_location("model.py:3", "/home/u") == "model.py:3"
