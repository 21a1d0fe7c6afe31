"""The IR: a flat, topologically ordered list of nodes producing typed values.

Every value has exactly one producer. Sources are nodes too: `input` (fed at run time),
`param` (a trainable or state tensor fed from the model at run time) and `constant`
(an array frozen into the graph). A graph is built by appending nodes, so it is
topologically ordered by construction; passes build new graphs rather than mutate.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from graphcnn.errors import GraphBuildError, ShapeError
from graphcnn.ir.node import Node, Value
from graphcnn.ir.printer import format_node
from graphcnn.ir.rules import op_rules
from graphcnn.ir.types import TensorType

__all__ = ["Graph", "Node", "Value", "describe_location", "infer_node"]


def describe_location(loc: str | None) -> str:
    return f" (at {loc})" if loc else ""


def infer_node(op: str, in_types: list[TensorType], attrs: dict[str, Any],
               loc: str | None) -> tuple[dict[str, Any], list[TensorType]]:
    """Validate an op's attributes and infer its output types, or raise a GraphBuildError
    that names the op, the input shapes and the user's location."""
    opdef = op_rules(op)
    try:
        opdef.check_arity(len(in_types))
        full_attrs = opdef.normalize_attrs(attrs, in_types)
        return full_attrs, opdef.infer(in_types, full_attrs)
    except ShapeError as err:
        shapes = ", ".join(str(t) for t in in_types) or "no inputs"
        raise GraphBuildError(f"{op}: {err} [inputs: {shapes}]{describe_location(loc)}") from None


class Graph:
    """A computation graph. Build it with `add`; read it in `nodes` order."""

    def __init__(self, name: str = "graph") -> None:
        self.name = name
        self.nodes: list[Node] = []
        self.outputs: list[Value] = []
        self.output_names: list[str] = []
        self._next_value = 0

    # ---- building -------------------------------------------------------------------
    def add(self, op: str, inputs: Sequence[Value] = (), *, loc: str | None = None,
            **attrs: Any) -> Value:
        """Append a single-output node and return its value."""
        node = self.add_node(op, inputs, attrs, loc=loc)
        return node.output

    def add_node(self, op: str, inputs: Sequence[Value], attrs: dict[str, Any],
                 loc: str | None = None) -> Node:
        """Append a node: validate its attributes, infer its output types, or raise a
        GraphBuildError that names the op, the input shapes and the user's location."""
        inputs = list(inputs)
        full_attrs, out_types = infer_node(op, [v.type for v in inputs], attrs, loc)
        node = Node(len(self.nodes), op, inputs, full_attrs, loc)
        for index, t in enumerate(out_types):
            node.outputs.append(Value(self._next_value, t, node, index))
            self._next_value += 1
        self.nodes.append(node)
        return node

    def input(self, name: str, shape: Sequence[int], dtype: str = "float32") -> Value:
        return self.add("input", name=name, shape=tuple(shape), dtype=dtype)

    def param(self, name: str, shape: Sequence[int], dtype: str = "float32",
              trainable: bool = True) -> Value:
        return self.add("param", name=name, shape=tuple(shape), dtype=dtype,
                        trainable=trainable)

    def constant(self, value: np.ndarray | float, name: str = "",
                 dtype: str | None = None) -> Value:
        array = np.asarray(value, dtype=dtype)
        if dtype is None and not isinstance(value, np.ndarray) and array.dtype.kind == "f":
            array = array.astype(np.float32)  # Python floats mean float32, like torch
        return self.add("constant", value=array, name=name)

    def set_outputs(self, values: Sequence[Value], names: Sequence[str] | None = None) -> None:
        self.outputs = list(values)
        self.output_names = list(names) if names is not None else [
            f"output{i}" for i in range(len(values))]

    # ---- reading --------------------------------------------------------------------
    def nodes_of(self, op: str) -> list[Node]:
        return [n for n in self.nodes if n.op == op]

    @property
    def inputs(self) -> list[Value]:
        return [n.output for n in self.nodes if n.op == "input"]

    @property
    def params(self) -> list[Value]:
        return [n.output for n in self.nodes if n.op == "param"]

    def input_named(self, name: str) -> Value:
        for n in self.nodes:
            if n.op == "input" and n.attrs["name"] == name:
                return n.output
        raise KeyError(f"graph {self.name!r} has no input named {name!r}")

    def users(self) -> dict[int, list[Node]]:
        """Value id -> the nodes that read it (a node reading twice appears twice)."""
        out: dict[int, list[Node]] = {}
        for node in self.nodes:
            for v in node.inputs:
                out.setdefault(v.id, []).append(node)
        return out

    def values(self) -> Iterable[Value]:
        for node in self.nodes:
            yield from node.outputs

    def compute_nodes(self) -> list[Node]:
        """Nodes that do work at run time (not sources)."""
        return [n for n in self.nodes if n.op not in ("input", "param", "constant")]

    def __str__(self) -> str:
        """One deterministic text form: what golden tests and dumps compare."""
        lines = [f"graph {self.name} {{"]
        lines += ["  " + format_node(n) for n in self.nodes]
        outs = ", ".join(f"{name}=%{v.id}" for name, v in zip(self.output_names, self.outputs))
        lines.append(f"  return {outs}")
        lines.append("}")
        return "\n".join(lines)
