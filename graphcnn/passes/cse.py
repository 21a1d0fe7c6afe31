"""Common-subexpression elimination: two nodes with the same op, the same inputs and equal
attributes compute the same thing; keep the first.

Constants are compared by dtype, shape and bytes (their `name` is a label, not part of
the value). Never merged: `input` and `param` nodes (each is a distinct fed tensor) and
`dropout` (deterministic for one seed and salt, but kept apart to be safe). `add` and
`mul` are commutative bit for bit in IEEE arithmetic, so a+b and b+a merge.
"""
from __future__ import annotations

import hashlib
from typing import Any, Hashable

import numpy as np

from graphcnn.ir.graph import Graph, Node, Value
from graphcnn.passes.rewrite import rewrite

NEVER_MERGED = frozenset({"input", "param", "dropout", "channel_dropout"})
COMMUTATIVE = frozenset({"add", "mul"})


def attr_key(value: Any) -> Hashable:
    """A hashable key equal for equal attribute values (exact: floats by their bits)."""
    if isinstance(value, np.ndarray):
        data = np.ascontiguousarray(value).tobytes()
        return ("array", str(value.dtype), value.shape, hashlib.sha1(data).hexdigest())
    if isinstance(value, (bool, np.bool_)):
        return ("bool", bool(value))
    if isinstance(value, (int, np.integer)):
        return ("int", int(value))
    if isinstance(value, (float, np.floating)):
        return ("float", float(value).hex())
    if isinstance(value, (tuple, list)):
        return (type(value).__name__,) + tuple(attr_key(v) for v in value)
    if isinstance(value, (str, type(None))):
        return value
    return ("object", id(value))   # unknown kinds merge only with themselves


def node_key(node: Node, inputs: list[Value]) -> Hashable:
    ids = [v.id for v in inputs]
    if node.op in COMMUTATIVE:
        ids.sort()
    attrs = {k: v for k, v in node.attrs.items() if not (node.op == "constant" and k == "name")}
    return (node.op, tuple(ids), tuple(sorted((k, attr_key(v)) for k, v in attrs.items())))


def _same_constant(a: Node, b: Node) -> bool:
    x, y = a.attrs["value"], b.attrs["value"]
    return x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def common_subexpression_elimination(graph: Graph) -> Graph:
    seen: dict[Hashable, list[Node]] = {}

    def rule(g: Graph, node: Node, inputs: list[Value]) -> list[Value] | None:
        if node.op in NEVER_MERGED:
            return None
        key = node_key(node, inputs)
        for earlier in seen.get(key, []):
            if node.op != "constant" or _same_constant(earlier, node):  # digest collision
                return list(earlier.outputs)
        new = g.add_node(node.op, inputs, dict(node.attrs), loc=node.loc)
        seen.setdefault(key, []).append(new)
        return list(new.outputs)

    return rewrite(graph, rule)


cse = common_subexpression_elimination
