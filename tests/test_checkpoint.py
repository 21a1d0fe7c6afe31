"""Checkpoint files: round trip, corrupt files, atomic writes, stale temporary files, the
lock against a second writer, and the older two-file format."""
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from checkpoint_files import repack

from graphcnn.errors import CheckpointError, CheckpointInUseError
from graphcnn.train import checkpoint as ckpt
from graphcnn.train.checkpoint import (
    checkpoint_exists,
    checkpoint_file,
    checkpoint_paths,
    load_checkpoint,
    save_checkpoint,
)
from graphcnn.train.checkpoint_lock import CheckpointLock, lock_file

ROOT = Path(__file__).resolve().parent.parent


def _save(path, scale=1.0, epoch=1):
    params = {"fc.weight": np.arange(6, dtype=np.float32).reshape(2, 3) * scale,
              "fc.bias": np.zeros(2, np.float32)}
    opt = {"momentum/fc.weight": np.ones((2, 3), np.float32)}
    meta = {"epoch": epoch, "lr": np.float64(0.1), "rng": {"state": 2**100}}
    save_checkpoint(path, params, opt, meta)
    return params, opt


def _temps(directory):
    return [f for f in os.listdir(directory) if f.endswith(".tmp")]


def test_round_trip(tmp_path):
    params, opt = _save(tmp_path / "run")
    p2, o2, meta = load_checkpoint(tmp_path / "run")
    assert list(p2) == list(params) and all(np.array_equal(params[k], p2[k]) for k in params)
    assert all(p2[k].dtype == params[k].dtype for k in params)
    assert np.array_equal(o2["momentum/fc.weight"], opt["momentum/fc.weight"])
    assert meta["epoch"] == 1 and meta["lr"] == 0.1 and meta["rng"]["state"] == 2**100
    assert meta["version"] == ckpt.FORMAT_VERSION
    # one file (and its lock file), no temporary files
    assert sorted(os.listdir(tmp_path)) == [".run.ckpt.lock", "run.ckpt"]


def test_empty_and_scalar_arrays_round_trip(tmp_path):
    save_checkpoint(tmp_path / "e", {"a": np.zeros((0, 3), np.float32),
                                     "s": np.float64(2.5)}, {}, {})
    params, _, _ = load_checkpoint(tmp_path / "e")
    assert params["a"].shape == (0, 3) and params["s"].shape == () and params["s"] == 2.5


def test_suffix_is_optional(tmp_path):
    for name in ("a.npz", "a.json", "a.ckpt", "a"):
        assert checkpoint_file(tmp_path / name) == tmp_path / "a.ckpt"
    assert checkpoint_paths(tmp_path / "a.ckpt")[0] == tmp_path / "a.npz"
    _save(tmp_path / "a.npz")
    assert checkpoint_exists(tmp_path / "a") and checkpoint_exists(tmp_path / "a.json")
    assert not checkpoint_exists(tmp_path / "b")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nothing")


@pytest.mark.parametrize("keep", [0, 10, 30, 100, -33, -1])
def test_truncated_file_is_a_clear_error(tmp_path, keep):
    _save(tmp_path / "run")
    f = tmp_path / "run.ckpt"
    data = f.read_bytes()
    f.write_bytes(data[:keep] if keep >= 0 else data[:len(data) + keep])
    with pytest.raises(CheckpointError, match="run.ckpt"):
        load_checkpoint(tmp_path / "run")


def test_flipped_byte_in_the_metadata_is_detected(tmp_path):
    _save(tmp_path / "run")
    f = tmp_path / "run.ckpt"
    data = bytearray(f.read_bytes())
    data[data.index(b'"epoch":1') + 8] = ord("7")   # epoch 1 -> 7: still valid JSON
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(tmp_path / "run")


@pytest.mark.parametrize("mutate, message", [
    (lambda h: {**h, "format": "other"}, "not a graphcnn checkpoint"),
    (lambda h: {**h, "version": 99}, "version"),
    (lambda h: b"[" * 100_000 + b"]" * 100_000, "not valid JSON|not a graphcnn"),
    (lambda h: b'{"format": NaN}', "not valid JSON"),
    (lambda h: b"\xff\xfe", "not valid JSON"),
    (lambda h: {**h, "metadata": [1]}, "metadata"),
    (lambda h: {**h, "arrays": {"a": 1}}, "array table"),
    (lambda h: {**h, "arrays": h["arrays"][:1]}, "truncated or corrupt"),
    (lambda h: {**h, "arrays": [{**h["arrays"][0], "dtype": "|O"}] + h["arrays"][1:]},
     "not a numeric dtype"),
    (lambda h: {**h, "arrays": [{**h["arrays"][0], "shape": [10**12, 10**12]}]
                + h["arrays"][1:]}, "declares"),
    (lambda h: {**h, "arrays": [{**h["arrays"][0], "shape": [10**12, 10**12],
                                  "nbytes": 4 * 10**24}] + h["arrays"][1:]},
     "truncated or corrupt"),
    (lambda h: {**h, "arrays": [{**h["arrays"][0], "shape": [True, 3]}] + h["arrays"][1:]},
     "bad shape"),
    (lambda h: {**h, "arrays": [{**h["arrays"][0], "name": "../../etc"}] + h["arrays"][1:]},
     "bad name"),
    (lambda h: {**h, "arrays": [h["arrays"][0]] * 3}, "repeats"),
    (lambda h: {**h, "arrays": [{**h["arrays"][0], "offset": 64}] + h["arrays"][1:]},
     "offset"),
])
def test_crafted_headers_are_clear_errors(tmp_path, mutate, message):
    _save(tmp_path / "run")
    repack(tmp_path / "run.ckpt", mutate)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "run")


def test_expected_shapes_are_checked_before_reading(tmp_path):
    _save(tmp_path / "run")
    with pytest.raises(CheckpointError, match="does not fit model 'm'.*'fc.bias' has shape"):
        load_checkpoint(tmp_path / "run", {"fc.weight": (2, 3), "fc.bias": (3,)}, "m")
    with pytest.raises(CheckpointError, match="lack \\['x'\\]"):
        load_checkpoint(tmp_path / "run", {"fc.weight": (2, 3), "fc.bias": (2,), "x": (1,)})


def test_object_arrays_and_nan_metadata_are_refused(tmp_path):
    with pytest.raises(TypeError, match="never pickled"):
        save_checkpoint(tmp_path / "x", {"w": np.array([{}], dtype=object)}, {}, {})
    with pytest.raises(ValueError, match="NaN"):
        save_checkpoint(tmp_path / "x", {}, {}, {"loss": float("nan")})
    assert not checkpoint_exists(tmp_path / "x")


@pytest.mark.parametrize("fail_on", ["write", "replace"])
def test_interrupted_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, fail_on):
    params, _ = _save(tmp_path / "run", scale=1.0, epoch=1)
    before = (tmp_path / "run.ckpt").read_bytes()

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    if fail_on == "write":
        monkeypatch.setattr(ckpt, "_write", broken)
    else:  # the crash just before the commit point
        monkeypatch.setattr(ckpt.os, "replace", broken)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path / "run", scale=5.0, epoch=2)
    monkeypatch.undo()
    assert (tmp_path / "run.ckpt").read_bytes() == before
    p2, _, meta = load_checkpoint(tmp_path / "run")
    assert meta["epoch"] == 1 and np.array_equal(p2["fc.weight"], params["fc.weight"])
    assert not _temps(tmp_path)


def test_stale_temporary_files_are_removed_by_the_next_save(tmp_path):
    _save(tmp_path / "run")
    stale = [".run.ckpt.abcd1234.tmp", ".run.npz.zz_x9876.tmp", ".run.json.q1w2e3r4.tmp"]
    others = [".run2.ckpt.abcd1234.tmp", ".run.ckpt.x.ckpt.abcd1234.tmp", "notes.tmp"]
    for name in stale + others:
        (tmp_path / name).write_bytes(b"half a save")
    _save(tmp_path / "run", epoch=2)
    left = sorted(_temps(tmp_path))
    assert left == sorted(others)   # only this checkpoint's own leftovers are removed


_HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from graphcnn.train.checkpoint_lock import CheckpointLock
    lock = CheckpointLock(Path(sys.argv[1])).acquire()
    print("held", flush=True)
    sys.stdin.readline()
""")


def test_a_second_writer_gets_a_clear_error(tmp_path):
    _save(tmp_path / "run")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path / "run.ckpt")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CheckpointInUseError) as info:
            _save(tmp_path / "run", epoch=2)
        message = str(info.value)
        assert "run.ckpt" in message and f"pid {holder.pid}" in message
        assert load_checkpoint(tmp_path / "run")[2]["epoch"] == 1   # untouched
    finally:
        holder.communicate("\n", timeout=30)
    _save(tmp_path / "run", epoch=3)   # the holder is gone: the path is free again
    assert load_checkpoint(tmp_path / "run")[2]["epoch"] == 3


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    lock_file(tmp_path / "run.ckpt").write_text(f"pid {dead} on somewhere\n")
    _save(tmp_path / "run")
    assert load_checkpoint(tmp_path / "run")[2]["epoch"] == 1


def test_the_lock_is_shared_within_a_process(tmp_path):
    with CheckpointLock(tmp_path / "run.ckpt"), CheckpointLock(tmp_path / "run.ckpt"):
        _save(tmp_path / "run")
    assert f"pid {os.getpid()}" in lock_file(tmp_path / "run.ckpt").read_text()


# ---- the older two-file format ---------------------------------------------------------
def _save_legacy(path, epoch=1):
    npz, meta_path = checkpoint_paths(path)
    np.savez(npz, **{"param/fc.weight": np.full((2, 3), epoch, np.float32),
                     "opt/momentum/fc.weight": np.ones((2, 3), np.float32)})
    digest = hashlib.sha256(npz.read_bytes()).hexdigest()
    meta_path.write_text(json.dumps({"format": ckpt.FORMAT_NAME, "version": 1,
                                     "epoch": epoch, "arrays_sha256": digest}))
    return npz, meta_path


def test_the_older_format_is_still_read(tmp_path):
    _save_legacy(tmp_path / "old", epoch=4)
    assert checkpoint_exists(tmp_path / "old")
    params, opt, meta = load_checkpoint(tmp_path / "old")
    assert meta["epoch"] == 4 and np.all(params["fc.weight"] == 4)
    assert list(opt) == ["momentum/fc.weight"]
    _save(tmp_path / "old", epoch=5)      # the next save writes the new format, read first
    assert load_checkpoint(tmp_path / "old")[2]["epoch"] == 5


def test_older_format_corruptions_are_clear_errors(tmp_path):
    npz, meta_path = _save_legacy(tmp_path / "old")
    npz.write_bytes(npz.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(tmp_path / "old")
    meta_path.write_text("{" * 50)
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tmp_path / "old")
    # a member whose header claims more than it holds: refused before it is read
    np.savez(npz, **{"param/w": np.zeros(4, np.float32)})
    data = npz.read_bytes().replace(b"(4,)", b"(9,)")
    npz.write_bytes(data)
    meta_path.write_text(json.dumps({"format": ckpt.FORMAT_NAME, "version": 1,
                                     "arrays_sha256": hashlib.sha256(data).hexdigest()}))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(tmp_path / "old")
