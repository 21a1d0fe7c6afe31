"""Checkpoints survive any kill and any bad file.

- A saving process is SIGKILLed at random moments, 50 times; after each kill the
  checkpoint loads, whole (the previous save or the new one), and the next save leaves no
  temporary file (benchmarks/checkpoint_kill.py runs the same harness longer).
- Fuzzed files (flipped bytes, truncations, metadata fields of the wrong type, huge
  numbers, deep nesting) loaded into a Trainer: every failure is a CheckpointError with a
  message, and the trainer's model, optimizer and rng are untouched by a failed load.
"""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from checkpoint_files import repack
from hypothesis import given, settings
from hypothesis import strategies as st

import graphcnn as gc
from graphcnn import nn
from graphcnn.errors import CheckpointError
from graphcnn.train.normalize import Normalize
from graphcnn.train.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent


def _harness():
    spec = importlib.util.spec_from_file_location("checkpoint_kill",
                                                  ROOT / "benchmarks" / "checkpoint_kill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fifty_kills_while_saving_leave_a_loadable_checkpoint(tmp_path):
    result = _harness().run_kills(50, tmp_path, seed=1, max_delay=0.2)
    assert result["kills"] == result["loadable"] == 50
    assert result["kills_with_a_new_checkpoint"] > 0   # the savers got somewhere
    assert result["max_temp_files_after_a_kill"] <= 1
    assert result["temp_files_after_next_save"] == 0


# ---- fuzzed files ------------------------------------------------------------------------
def _trainer(seed: int) -> Trainer:
    gc.manual_seed(seed)
    x = gc.Input((4,), name="x")
    model = gc.Model(inputs=x, outputs=nn.Linear(4, 3, name="fc")(x), name="tiny")
    trainer = Trainer(model, optimizer=gc.optim.SGD(lr=0.1, momentum=0.9),
                      schedule=gc.optim.StepLR(step_size=2, gamma=0.5),
                      normalize=Normalize(mean=[0.5], std=[2.0]), seed=seed)
    grads = {k: np.full_like(v, 0.1) for k, v in model.trainable_parameters().items()}
    trainer.optimizer.step(model.trainable_parameters(), grads)   # momentum state exists
    trainer.history.append(0, {"loss": 1.5, "accuracy": float("nan"), "lr": 0.1})
    return trainer


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A checkpoint of one trainer, and its bytes."""
    path = tmp_path_factory.mktemp("fuzz") / "c"
    writer = _trainer(seed=1)
    writer.save_checkpoint(str(path), epochs_done=1)
    writer.release_checkpoint()
    return path, (path.parent / "c.ckpt").read_bytes()


def _snapshot(trainer: Trainer):
    arrays, scalars = trainer.optimizer.state_dict()
    return ({k: v.copy() for k, v in trainer.model.parameters().items()}, arrays,
            json.dumps(scalars, sort_keys=True), json.dumps(trainer.rng.bit_generator.state),
            json.dumps(trainer.schedule.state_dict()), trainer.normalize, len(trainer.history))


def _assert_same(a, b):
    for x, y in zip(a[:2], b[:2]):
        assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
    assert a[2:] == b[2:]


def _load_expecting_checkpoint_error(tmp_path: Path, data: bytes) -> None:
    """Load `data` into a fresh trainer: it loads, or fails with a CheckpointError that
    leaves the trainer exactly as it was."""
    (tmp_path / "c.ckpt").write_bytes(data)
    trainer = _trainer(seed=2)
    before = _snapshot(trainer)
    try:
        trainer.load_checkpoint(str(tmp_path / "c"))
    except CheckpointError as exc:
        assert str(exc) and "checkpoint" in str(exc)
        _assert_same(_snapshot(trainer), before)
    finally:
        trainer.release_checkpoint()


def test_the_fuzz_fixture_loads(saved, tmp_path):
    trainer = _trainer(seed=2)
    assert trainer.load_checkpoint(str(saved[0])) == 1
    writer = _trainer(seed=1)
    assert all(np.array_equal(writer.model.parameters()[k], v)
               for k, v in trainer.model.parameters().items())
    assert trainer.rng.bit_generator.state == writer.rng.bit_generator.state
    assert trainer.normalize.mean.tolist() == [0.5] and math.isnan(
        trainer.history.history["accuracy"][0])
    trainer.release_checkpoint()


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_flipped_and_truncated_files_are_checkpoint_errors(saved, tmp_path_factory, data):
    _, original = saved
    raw = bytearray(original)
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[:data.draw(st.integers(0, len(raw) - 1), label="length")]
    else:
        places = st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=4, unique=True)
        for at in data.draw(places, label="flipped bytes"):   # distinct: no flip undoes one
            raw[at] ^= data.draw(st.integers(1, 255), label="mask")
    tmp = tmp_path_factory.mktemp("flip")
    (tmp / "c.ckpt").write_bytes(bytes(raw))
    trainer = _trainer(seed=2)
    before = _snapshot(trainer)
    with pytest.raises(CheckpointError, match="c.ckpt"):   # the hash sees every change
        trainer.load_checkpoint(str(tmp / "c"))
    _assert_same(_snapshot(trainer), before)
    trainer.release_checkpoint()


def _paths(value, prefix=()):
    """Every (path, value) in a JSON tree."""
    yield prefix, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value[:4]):
            yield from _paths(v, prefix + (i,))


_DEEP = "__deep__"
_BAD_VALUES = st.one_of(
    st.none(), st.booleans(), st.text(max_size=5), st.just(_DEEP),
    st.integers(-(10**30), 10**30), st.sampled_from([10**400, -(10**400), 2**64, -1, 0]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=3),
                                                               st.integers(), max_size=2))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_changed_metadata_fields_are_checkpoint_errors(saved, tmp_path_factory, data):
    _, original = saved
    tmp = tmp_path_factory.mktemp("meta")
    (tmp / "c.ckpt").write_bytes(original)
    probe = {}
    repack(tmp / "c.ckpt", lambda h: probe.update(h) or h)
    paths = [p for p, _ in _paths(probe) if p]
    path = data.draw(st.sampled_from(paths), label="field")
    delete = data.draw(st.booleans(), label="delete")
    value = data.draw(_BAD_VALUES, label="value")
    depth = data.draw(st.integers(100, 200_000), label="depth")

    def mutate(header):
        node = header
        for key in path[:-1]:
            node = node[key]
        if delete and isinstance(node, dict):
            del node[path[-1]]
        else:
            node[path[-1]] = value
        text = json.dumps(header)
        # deep nesting is written as text: json.dumps itself would recurse too deep
        return text.replace(json.dumps(_DEEP), "[" * depth + "]" * depth).encode()

    repack(tmp / "c.ckpt", mutate)
    _load_expecting_checkpoint_error(tmp, (tmp / "c.ckpt").read_bytes())


@pytest.mark.parametrize("field, value, message", [
    (("metadata", "rng"), {"bit_generator": "PCG64", "state": 5}, "rng"),
    (("metadata", "rng", "state", "state"), 10**400, "rng"),
    (("metadata", "epoch"), 2.5, "epoch must be an integer"),
    (("metadata", "epoch"), True, "epoch must be an integer"),
    (("metadata", "optimizer", "scalars", "lr"), "fast", "lr must be a finite number"),
    (("metadata", "optimizer", "scalars", "momentum"), -1.0, "momentum must be >= 0"),
    (("metadata", "optimizer", "class"), "Adam", "saved with optimizer 'Adam'"),
    (("metadata", "schedule", "state", "step_size"), 0, "schedule.state cannot be restored"),
    (("metadata", "schedule", "state", "gamma"), "x", "schedule.state.gamma"),
    (("metadata", "schedule", "class"), "CosineAnnealingLR", "saved with schedule"),
    (("metadata", "normalize", "std"), [0.0], "normalize cannot be restored"),
    (("metadata", "history", "history", "loss"), ["x"], "history"),
    (("metadata", "model", "parameters"), {}, "model.parameters"),
])
def test_bad_fields_leave_the_trainer_untouched(saved, tmp_path, field, value, message):
    (tmp_path / "c.ckpt").write_bytes(saved[1])

    def mutate(header):
        node = header
        for key in field[:-1]:
            node = node[key]
        node[field[-1]] = value
        return header

    repack(tmp_path / "c.ckpt", mutate)
    trainer = _trainer(seed=2)
    before = _snapshot(trainer)
    with pytest.raises(CheckpointError, match=message):
        trainer.load_checkpoint(str(tmp_path / "c"))
    _assert_same(_snapshot(trainer), before)
    trainer.release_checkpoint()
