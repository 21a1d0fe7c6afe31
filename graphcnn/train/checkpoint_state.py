"""What a Trainer restores from a checkpoint, checked in full before anything is touched.

`restorable(trainer, path)` reads the checkpoint and checks every field against the
trainer it is meant for: the parameters' names, shapes and dtypes against the model; the
optimizer's class, hyperparameters, step counts and state arrays; the schedule's class and
state (tried on a copy); the rng state (tried on a fresh bit generator); the input
normalization (built); the history and the epoch. Only a checkpoint that passes every
check becomes a `Restorable`, whose `apply` cannot fail half-way: a bad file raises
CheckpointError naming the file and the field, and leaves the model, the optimizer, the
schedule and the rng as they were.
"""
from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from graphcnn.errors import CheckpointError
from graphcnn.train.checkpoint import load_checkpoint
from graphcnn.train.history import History

MAX_EPOCH = 10**9
_FLOAT32_MAX = float(np.finfo(np.float32).max)   # Normalize holds float32 statistics
# String-valued schedule settings and what they may be
_CHOICES = {"mode": ("min", "max", "triangular", "triangular2", "exp_range"),
            "threshold_mode": ("rel", "abs")}


@dataclass
class Restorable:
    """A checked checkpoint, ready to apply to the trainer it was checked against."""

    epoch: int
    parameters: dict[str, np.ndarray]
    optimizer_arrays: dict[str, np.ndarray]
    optimizer_scalars: dict[str, Any]
    schedule_state: dict[str, Any] | None
    rng_state: dict[str, Any]
    normalize: Any
    history: History

    def apply(self, trainer: Any) -> int:
        """Restore everything; returns the epochs completed."""
        trainer.model.load_parameters(self.parameters)
        trainer.optimizer.load_state_dict(self.optimizer_arrays, self.optimizer_scalars)
        if self.schedule_state is not None:
            trainer.schedule.load_state_dict(self.schedule_state)
        trainer.rng.bit_generator.state = self.rng_state
        if self.normalize is not None:
            trainer.normalize = self.normalize
        trainer.history = self.history
        return self.epoch


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite float, or an int a float can hold (math.isfinite(10**400) would raise)."""
    if _is_int(value):
        return abs(value) <= 2**1023
    return isinstance(value, float) and math.isfinite(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Checker:
    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, field: str, message: str) -> CheckpointError:
        return CheckpointError(f"{self.where}: {field} {message}")

    def dict(self, value: Any, field: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(field, f"must be an object, got {_short(value)}")
        return value

    def int(self, value: Any, field: str, low: int = 0, high: int = MAX_EPOCH) -> int:
        if not (_is_int(value) and low <= value <= high):
            raise self.fail(field, f"must be an integer in [{low}, {high}], got {_short(value)}")
        return int(value)

    def number(self, value: Any, field: str, low: float = -math.inf) -> float:
        if not (_is_number(value) and value >= low):
            raise self.fail(field, f"must be a finite number >= {low}, got {_short(value)}")
        return float(value)

    def like(self, value: Any, current: Any, field: str) -> None:
        """`value` has the type of the attribute it will replace."""
        if isinstance(current, bool):
            ok = isinstance(value, bool)
        elif isinstance(current, int):
            ok = _is_int(value)
        elif isinstance(current, float):
            ok = _is_number(value)
        elif isinstance(current, str):
            ok = isinstance(value, str) and value in _CHOICES.get(field.rsplit(".", 1)[-1],
                                                                  (value,))
        elif isinstance(current, tuple):
            ok = (isinstance(value, list) and len(value) == len(current)
                  and all(_is_number(v) for v in value))
        else:
            ok = current is None and (value is None or _is_number(value))
        if not ok:
            raise self.fail(field, f"must be like {_short(current)}, got {_short(value)}")


def restorable(trainer: Any, path: str | os.PathLike[str]) -> Restorable:
    """Read the checkpoint at `path` and check it against `trainer` (module docstring)."""
    model = trainer.model
    expected = {k: tuple(v.shape) for k, v in model.parameters().items()}
    params, opt_arrays, meta = load_checkpoint(path, expected, model_name=model.name)
    c = _Checker(f"checkpoint {os.fspath(path)}")
    for name, value in params.items():
        if value.dtype.kind != "f":
            raise c.fail(f"parameter {name!r}", f"has dtype {value.dtype}, not floating point")
    epoch = c.int(meta.get("epoch"), "epoch")
    info = c.dict(meta.get("model"), "model")
    if not isinstance(info.get("name"), str):
        raise c.fail("model.name", f"must be a string, got {_short(info.get('name'))}")
    saved_shapes = c.dict(info.get("parameters"), "model.parameters")
    if {k: tuple(v) if isinstance(v, list) else v for k, v in saved_shapes.items()} != expected:
        raise c.fail("model.parameters", "does not list the checkpoint's parameters")
    arrays, scalars = _optimizer(c, trainer, meta.get("optimizer"), opt_arrays, params)
    return Restorable(epoch=epoch, parameters=params, optimizer_arrays=arrays,
                      optimizer_scalars=scalars,
                      schedule_state=_schedule(c, trainer.schedule, meta.get("schedule")),
                      rng_state=_rng(c, trainer.rng, meta.get("rng")),
                      normalize=_normalize(c, trainer.normalize, meta.get("normalize")),
                      history=_history(c, meta.get("history")))


def _saved_for(c: _Checker, saved: Any, what: str, live: Any) -> dict[str, Any]:
    """The checkpoint's `what` ("optimizer", "schedule") section, saved by the same class
    as this trainer's `live` one."""
    saved = c.dict(saved, what)
    cls = type(live).__name__
    if saved.get("class") != cls:
        raise CheckpointError(f"{c.where} was saved with {what} "
                              f"{_short(saved.get('class'))}, this trainer uses {cls}")
    return saved


def _optimizer(c: _Checker, trainer: Any, saved: Any, arrays: Mapping[str, np.ndarray],
               params: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    opt = trainer.optimizer
    saved, cls = _saved_for(c, saved, "optimizer", opt), type(opt).__name__
    scalars = c.dict(saved.get("scalars"), "optimizer.scalars")
    hyper = tuple(getattr(opt, "_HYPER", ()))
    unknown = sorted(set(scalars) - {"lr", "class", "steps", *hyper})
    if unknown:
        raise c.fail("optimizer.scalars", f"has unknown settings {unknown[:8]}")
    c.number(scalars.get("lr"), "optimizer.scalars.lr", low=0.0)
    if scalars.get("class", cls) != cls:
        raise c.fail("optimizer.scalars.class", f"is {_short(scalars.get('class'))}, not {cls}")
    trainable = set(trainer.model.trainable_parameters())
    for name, count in c.dict(scalars.get("steps", {}), "optimizer.scalars.steps").items():
        if name not in trainable:
            raise c.fail("optimizer.scalars.steps", f"names {_short(name)}, not a trainable "
                         f"parameter of the model")
        c.int(count, f"optimizer.scalars.steps[{name!r}]", high=2**62)
    for key in hyper:
        if key in scalars:
            c.like(scalars[key], getattr(opt, key), f"optimizer.scalars.{key}")
            values = scalars[key] if isinstance(scalars[key], list) else [scalars[key]]
            for v in values:  # every hyperparameter of SGD, Adam and AdamW is >= 0
                if not isinstance(v, bool) and not v >= 0:
                    raise c.fail(f"optimizer.scalars.{key}", f"must be >= 0, got {_short(v)}")
            if key == "betas" and not all(0 <= v < 1 for v in values):
                raise c.fail("optimizer.scalars.betas", f"must be in [0, 1), got {values}")
    buffers = getattr(opt, "_BUFFERS", None)
    for key, value in arrays.items():
        kind, _, name = key.partition("/")
        if (buffers is not None and kind not in buffers) or name not in trainable:
            raise c.fail("optimizer state", f"has an unexpected array {key!r}")
        if value.shape != params[name].shape or value.dtype.kind != "f":
            raise c.fail(f"optimizer state {key!r}", f"has shape {value.shape} and dtype "
                         f"{value.dtype}; the parameter has {params[name].shape}, float")
    return dict(arrays), scalars


def _schedule(c: _Checker, schedule: Any, saved: Any) -> dict[str, Any] | None:
    if schedule is None or saved is None:
        return None
    saved, cls = _saved_for(c, saved, "schedule", schedule), type(schedule).__name__
    state = c.dict(saved.get("state"), "schedule.state")
    hyper = tuple(getattr(schedule, "_HYPER", ()))
    counters = ("last_epoch", "num_bad_epochs", "cooldown_counter")
    optional_numbers = ("base_lr", "last_lr", "best")
    for key, value in state.items():
        field = f"schedule.state.{key}"
        if key in hyper:
            c.like(value, getattr(schedule, key), field)
        elif key in counters:
            c.int(value, field, high=2**62)
        elif key in optional_numbers:
            if value is not None:
                c.number(value, field)
        else:
            raise c.fail(field, "is not a setting of " + cls)
    if "last_epoch" not in state:
        raise c.fail("schedule.state.last_epoch", "is missing")
    trial = copy.copy(schedule)   # the state tried on a copy: the schedule stays as it is
    try:
        trial.load_state_dict(dict(state))
        lr = trial.lr_at(trial.last_epoch) if hasattr(trial, "lr_at") else 0.0
    except (ArithmeticError, ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise c.fail("schedule.state", f"cannot be restored: {exc}") from None
    if not (_is_number(lr) and lr >= 0):
        raise c.fail("schedule.state", f"gives the learning rate {_short(lr)}")
    return dict(state)


def _rng(c: _Checker, rng: np.random.Generator, saved: Any) -> dict[str, Any]:
    saved = c.dict(saved, "rng")
    trial = type(rng.bit_generator)()   # the state tried on a fresh bit generator
    try:
        trial.state = saved
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise c.fail("rng", f"is not a {type(trial).__name__} state: {exc}") from None
    return saved


def _normalize(c: _Checker, current: Any, saved: Any) -> Any:
    if saved is None or current is None or not hasattr(type(current), "from_state_dict"):
        return None
    saved = c.dict(saved, "normalize")
    for key in ("mean", "std"):
        value = saved.get(key)
        if value is not None and not (isinstance(value, list) and all(
                _is_number(v) and abs(v) <= _FLOAT32_MAX for v in value)):
            raise c.fail(f"normalize.{key}", f"must be a list of finite float32 numbers, got "
                         f"{_short(value)}")
    if not isinstance(saved.get("per_channel", True), bool):
        raise c.fail("normalize.per_channel", f"must be true or false, got "
                     f"{_short(saved.get('per_channel'))}")
    try:
        return type(current).from_state_dict(saved)
    except (ValueError, TypeError) as exc:
        raise c.fail("normalize", f"cannot be restored: {exc}") from None


def _history(c: _Checker, saved: Any) -> History:
    saved = c.dict(saved, "history")
    epochs = saved.get("epoch")
    if not (isinstance(epochs, list) and all(_is_int(e) and 0 <= e <= MAX_EPOCH for e in epochs)):
        raise c.fail("history.epoch", "must be a list of epoch numbers")
    records = c.dict(saved.get("history"), "history.history")
    for key, values in records.items():
        if not (isinstance(values, list)
                and all(v is None or _is_number(v) for v in values)):
            raise c.fail(f"history.history[{key!r}]", "must be a list of numbers or nulls")
    return History.from_state_dict({"epoch": epochs, "history": records})
