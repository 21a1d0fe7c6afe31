"""The text form of a node and its attributes, deterministic (arrays print by digest);
`str(graph)` (graph.py) puts the nodes together into the text that golden tests compare."""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from graphcnn.ir.node import Node


def format_attr(value: Any) -> str:
    if isinstance(value, np.ndarray):
        digest = hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest()[:8]
        return f"array<{value.dtype}{list(value.shape)}#{digest}>"
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, tuple):
        return "(" + ", ".join(format_attr(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def format_node(node: Node) -> str:
    lhs = ", ".join(f"%{v.id}" for v in node.outputs)
    types = ", ".join(str(v.type) for v in node.outputs)
    args = ", ".join(f"%{v.id}" for v in node.inputs)
    attrs = ", ".join(f"{k}={format_attr(v)}" for k, v in sorted(node.attrs.items()))
    attr_text = f" {{{attrs}}}" if attrs else ""
    return f"{lhs} = {node.op}({args}){attr_text} : {types}"
