"""Losses for training, by name or configured.

A training step (`gc.value_and_grad`, `gc.Trainer`) takes its loss as

- a name: ``"cross_entropy"``, ``"mse"``, ... (``gc.losses.available()`` lists them);
- a configured term: ``gc.losses.Loss("smooth_l1", beta=0.5)``, the loss op's attributes
  as keywords (PyTorch's constructor arguments);
- a function ``(graph, prediction, target) -> scalar value`` building the loss on the graph.

    >>> import graphcnn as gc
    >>> gc.losses.Loss("mse", reduction="sum")
    Loss('mse', reduction='sum')
"""
from __future__ import annotations

from typing import Any

from graphcnn.ir.graph import Graph, Value
from graphcnn.ir.types import TensorType
from graphcnn.ops.loss import LOSSES, LossEntry


def available() -> list[str]:
    """The names of the losses a training step can be asked for."""
    return sorted(LOSSES)


def _entry(name: str) -> LossEntry:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {available()}, a "
                         f"gc.losses.Loss, or a function (graph, prediction, target) -> "
                         f"scalar value")
    return LOSSES[name]


class Loss:
    """One loss term: a registered loss and its attributes (e.g. ``reduction``)."""

    def __init__(self, name: str, **attrs: Any) -> None:
        self.entry = _entry(name)
        self.name = name
        self.attrs = attrs

    @property
    def target_kind(self) -> str:
        """"class_index" (int64 class indices) or "like" (the prediction's shape)."""
        return self.entry.target

    def target_type(self, prediction: TensorType) -> TensorType:
        """The type of the target this loss takes next to `prediction`."""
        if self.entry.target == "class_index":
            shape = prediction.shape[:1] + prediction.shape[2:]
            return TensorType(shape, "int64")
        return prediction

    def build(self, graph: Graph, prediction: Value, target: Value) -> Value:
        """The scalar loss of `prediction` against `target`, added to `graph`."""
        return graph.add(self.entry.op, [prediction, target], **self.attrs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Loss) and (self.name, self.attrs) == (other.name, other.attrs)

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.attrs.items(), key=lambda kv: kv[0]))))

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.attrs.items())
        return f"Loss({self.name!r}{args})"


def as_loss(loss: str | Loss) -> Loss:
    """A loss name or term as a term."""
    return loss if isinstance(loss, Loss) else Loss(loss)


__all__ = ["Loss", "as_loss", "available"]
