"""What the IR needs to know about an op, without depending on the op layer.

The IR checks every node it builds (arity, attributes, output types), but those rules live
in the op registry (graphcnn.ops), a layer above it. So the IR states what it asks of an
op (`OpRules`) and holds one function that finds an op's rules by name; graphcnn.ops
installs its registry there when it is imported (``import graphcnn`` does that).
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

from graphcnn.ir.types import TensorType


class OpRules(Protocol):
    """The part of an op's definition that building and verifying a graph uses."""

    def check_arity(self, count: int) -> None:
        """Raise ShapeError unless the op takes `count` inputs."""

    def normalize_attrs(self, attrs: dict[str, Any],
                        in_types: list[TensorType]) -> dict[str, Any]:
        """Every attribute, validated and with defaults filled in, or a ShapeError."""

    def infer(self, in_types: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
        """The output types, or a ShapeError."""


# name -> the op's rules; raises KeyError naming the op when there is no such op
OpResolver = Callable[[str], OpRules]

_resolver: OpResolver | None = None


def set_op_resolver(resolver: OpResolver) -> None:
    """Install the function that finds an op's rules (graphcnn.ops does, on import)."""
    global _resolver
    _resolver = resolver


def op_rules(op: str) -> OpRules:
    """The rules of `op`, from the installed resolver (KeyError for an unknown op)."""
    if _resolver is None:
        raise RuntimeError("no op registry is installed: import graphcnn (or graphcnn.ops) "
                           "before building graphs")
    return _resolver(op)
