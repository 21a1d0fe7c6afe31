"""The inference executables a Trainer evaluates and predicts with, cached per batch size."""
from __future__ import annotations

from typing import Any

from graphcnn.api import compile as gc_compile
from graphcnn.model import Model


def inference_executable(cache: dict[int, Any], model: Model, backend: Any,
                         batch_size: int) -> Any:
    """An executable reading the model's live parameters (frozen=False) for batches of
    `batch_size`, from `cache` or compiled into it: on cpu and reference one for any batch
    up to it, so that an evaluation's last, smaller batch runs on it as it is; where the
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
