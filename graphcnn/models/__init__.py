"""The model zoo: functions returning a fresh Model (parameters drawn from graphcnn's
seeded generator, see gc.manual_seed).

    >>> import graphcnn as gc
    >>> gc.models.get_model("lenet5").num_parameters()
    61706
"""
from __future__ import annotations

from typing import Any, Callable

from graphcnn.model import Model
from graphcnn.models.lenet5 import lenet5

# name -> constructor; the CLI resolves model names here.
ZOO: dict[str, Callable[..., Model]] = {
    "lenet5": lenet5,
}


def get_model(name: str, **kwargs: Any) -> Model:
    """Build the zoo model called `name` (case-insensitive) with the given arguments."""
    key = name.lower()
    if key not in ZOO:
        raise ValueError(f"unknown model {name!r}; the zoo has {sorted(ZOO)}")
    return ZOO[key](**kwargs)


def available_models() -> list[str]:
    return sorted(ZOO)


__all__ = ["ZOO", "available_models", "get_model", "lenet5"]
