"""The compiled pieces a Trainer runs, cached per batch size: the inference executables it
evaluates and predicts with, and the gradient step it trains with."""
from __future__ import annotations

import warnings
from typing import Any, Mapping

from graphcnn.api import compile as gc_compile
from graphcnn.api import value_and_grad
from graphcnn.model import Model
from graphcnn.runtime.dynamic_batch import DynamicBatchError


def inference_executable(cache: dict[int, Any], model: Model, backend: Any,
                         batch_size: int) -> Any:
    """An executable reading the model's live parameters (frozen=False) for batches of
    `batch_size`, from `cache` or compiled into it: on cpu and reference one for any batch
    up to it, so that an evaluation's last, smaller batch runs as it is; where the
    backend or the model runs one batch size only, one for that size."""
    for size, exe in cache.items():
        if size == batch_size or (exe.max_batch or 0) >= batch_size:
            return exe
    try:
        exe = gc_compile(model, None, backend, frozen=False, max_batch=batch_size)
    except ValueError:   # a backend, or a model, that runs one batch size only
        exe = gc_compile(model, batch_size, backend, frozen=False)
    cache[batch_size] = exe
    return exe


def training_step(cache: dict[tuple[int, bool], Any], model: Model, loss: Any, backend: Any,
                  batch_size: int, any_batch: bool,
                  loss_weights: Mapping[str, float] | None, sync_batchnorm: int) -> Any:
    """The gradient step for batches of `batch_size`, from `cache` or built into it. With
    `any_batch`, one step that also trains on an epoch's last, smaller batch
    (``value_and_grad(batch_size=None, max_batch=batch_size)``); where the backend or the
    model cannot run one (its training graph holds at one batch size), a step for
    `batch_size` alone and a one-line RuntimeWarning saying the last partial batch of
    each epoch is dropped. `step.executable.max_batch` tells which it is."""
    key = (batch_size, any_batch)
    if key in cache:
        return cache[key]
    if (batch_size, True) in cache:   # a step for any batch runs this one too
        return cache[(batch_size, True)]
    step = None
    if any_batch:
        try:
            step = value_and_grad(model, loss, None, backend, loss_weights=loss_weights,
                                  max_batch=batch_size)
        except DynamicBatchError as err:   # cuda, or a graph that holds at one batch size
            warnings.warn(f"Trainer: the last partial batch of each epoch is dropped "
                          f"(drop_last): {err}", RuntimeWarning, stacklevel=4)
    if step is None:
        step = value_and_grad(model, loss, batch_size, backend, loss_weights=loss_weights,
                              sync_batchnorm=sync_batchnorm)
    cache[key] = step
    return step


def batches_per_epoch(samples: int, batch_size: int, step: Any, drop_last: bool) -> int:
    """How many steps an epoch of `samples` takes: every full batch, and the last, smaller
    one unless `drop_last`, when `step` runs it (a step for any batch up to `batch_size`,
    and the remainder not below the smallest batch its graph trains at: 2 for batch norm
    on (N, C))."""
    full, rest = divmod(samples, batch_size)
    exe = step.executable
    if rest and not drop_last and exe.max_batch is not None \
            and rest >= exe.runner.smallest_batch:
        return full + 1
    return full


__all__ = ["batches_per_epoch", "inference_executable", "training_step"]
