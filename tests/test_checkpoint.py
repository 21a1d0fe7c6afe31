"""Checkpoint files: round trip, corrupt files, atomic writes; and resuming a Trainer."""
import json
import os

import numpy as np
import pytest

from graphcnn.train import checkpoint as ckpt
from graphcnn.train.checkpoint import (
    checkpoint_exists,
    checkpoint_paths,
    load_checkpoint,
    save_checkpoint,
)


def _save(path, scale=1.0, epoch=1):
    params = {"fc.weight": np.arange(6, dtype=np.float32).reshape(2, 3) * scale,
              "fc.bias": np.zeros(2, np.float32)}
    opt = {"momentum/fc.weight": np.ones((2, 3), np.float32)}
    meta = {"epoch": epoch, "lr": np.float64(0.1), "rng": {"state": 2**100}}
    save_checkpoint(path, params, opt, meta)
    return params, opt


def test_round_trip(tmp_path):
    params, opt = _save(tmp_path / "run")
    p2, o2, meta = load_checkpoint(tmp_path / "run")
    assert list(p2) == list(params) and all(np.array_equal(params[k], p2[k]) for k in params)
    assert np.array_equal(o2["momentum/fc.weight"], opt["momentum/fc.weight"])
    assert meta["epoch"] == 1 and meta["lr"] == 0.1 and meta["rng"]["state"] == 2**100
    assert meta["version"] == ckpt.FORMAT_VERSION
    assert sorted(os.listdir(tmp_path)) == ["run.json", "run.npz"]  # no temporary files left


def test_suffix_is_optional(tmp_path):
    assert checkpoint_paths(tmp_path / "a.npz") == checkpoint_paths(tmp_path / "a")
    assert checkpoint_paths(tmp_path / "a.json")[0] == tmp_path / "a.npz"
    _save(tmp_path / "a.npz")
    assert checkpoint_exists(tmp_path / "a") and checkpoint_exists(tmp_path / "a.json")
    assert not checkpoint_exists(tmp_path / "b")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nothing")


def test_truncated_arrays_are_a_clear_error(tmp_path):
    _save(tmp_path / "run")
    npz = tmp_path / "run.npz"
    data = npz.read_bytes()
    npz.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="run.npz"):
        load_checkpoint(tmp_path / "run")


def test_garbage_arrays_with_matching_hash_are_a_clear_error(tmp_path):
    _save(tmp_path / "run")
    npz, meta_path = checkpoint_paths(tmp_path / "run")
    npz.write_bytes(b"not a zip file at all")
    meta = json.loads(meta_path.read_text())
    meta["arrays_sha256"] = ckpt._sha256(npz)  # get past the hash to the reader itself
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="run.npz"):
        load_checkpoint(tmp_path / "run")


def test_corrupt_metadata_is_a_clear_error(tmp_path):
    _save(tmp_path / "run")
    meta = tmp_path / "run.json"
    meta.write_text(meta.read_text()[:20])
    with pytest.raises(ValueError, match="run.json"):
        load_checkpoint(tmp_path / "run")


def test_foreign_json_and_future_version(tmp_path):
    _save(tmp_path / "run")
    meta = tmp_path / "run.json"
    meta.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not a graphcnn checkpoint"):
        load_checkpoint(tmp_path / "run")
    meta.write_text(json.dumps({"format": ckpt.FORMAT_NAME, "version": 99}))
    with pytest.raises(ValueError, match="version 99"):
        load_checkpoint(tmp_path / "run")


def test_arrays_from_another_save_are_detected(tmp_path):
    _save(tmp_path / "a", scale=1.0)
    _save(tmp_path / "b", scale=2.0)
    os.replace(tmp_path / "b.npz", tmp_path / "a.npz")
    with pytest.raises(ValueError, match="do not match"):
        load_checkpoint(tmp_path / "a")


def test_object_arrays_are_refused(tmp_path):
    with pytest.raises(TypeError, match="never pickled"):
        save_checkpoint(tmp_path / "x", {"w": np.array([{}], dtype=object)}, {}, {})


@pytest.mark.parametrize("fail_on", ["savez", "json"])
def test_interrupted_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, fail_on):
    params, _ = _save(tmp_path / "run", scale=1.0, epoch=1)
    before = {p: p.read_bytes() for p in checkpoint_paths(tmp_path / "run")}

    if fail_on == "savez":
        def broken_savez(file, **arrays):
            file.write(b"PK\x03\x04 half a zip")  # a partial write, then the crash
            raise KeyboardInterrupt

        monkeypatch.setattr(np, "savez", broken_savez)
    else:
        def broken_dumps(*args, **kwargs):
            raise OSError("disk full")

        monkeypatch.setattr(ckpt.json, "dumps", broken_dumps)
    with pytest.raises((KeyboardInterrupt, OSError)):
        _save(tmp_path / "run", scale=5.0, epoch=2)
    monkeypatch.undo()
    # nothing was replaced: both files are byte-for-byte the old ones
    assert {p: p.read_bytes() for p in before} == before
    p2, _, meta = load_checkpoint(tmp_path / "run")
    assert meta["epoch"] == 1 and np.array_equal(p2["fc.weight"], params["fc.weight"])
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_crash_between_the_two_renames_is_detected(tmp_path, monkeypatch):
    _save(tmp_path / "run", scale=1.0, epoch=1)
    real_replace = os.replace
    calls = []

    def replace_then_crash(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the .npz is in place, the .json is not
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", replace_then_crash)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path / "run", scale=5.0, epoch=2)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="do not match"):
        load_checkpoint(tmp_path / "run")
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
