"""Nodes and the values they produce: the pieces a Graph (graph.py) is built of."""
from __future__ import annotations

from typing import Any

from graphcnn.ir.types import TensorType


class Value:
    __slots__ = ("id", "type", "node", "index")

    def __init__(self, id: int, type: TensorType, node: "Node", index: int) -> None:
        self.id = id
        self.type = type
        self.node = node
        self.index = index

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    def __repr__(self) -> str:
        return f"%{self.id}:{self.type}"


class Node:
    __slots__ = ("id", "op", "inputs", "attrs", "outputs", "loc")

    def __init__(self, id: int, op: str, inputs: list[Value], attrs: dict[str, Any],
                 loc: str | None) -> None:
        self.id = id
        self.op = op
        self.inputs = inputs
        self.attrs = attrs
        self.outputs: list[Value] = []
        self.loc = loc

    @property
    def output(self) -> Value:
        if len(self.outputs) != 1:
            raise ValueError(f"{self.op} has {len(self.outputs)} outputs, not one")
        return self.outputs[0]

    def __repr__(self) -> str:
        return f"Node({self.op}, id={self.id})"
