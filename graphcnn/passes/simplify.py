"""Algebraic simplification: rewrites that remove work without changing any result or
output shape.

- reshape / flatten / broadcast_to / sum_to / slice / pad / a one-input concat whose
  output has its input's type is the identity (a full slice, zero padding, ...);
- a chain of reshapes and flattens is one reshape, to the final concrete shape (or
  nothing, when that is the shape the chain started from);
- x * 1, 1 * x, x / 1, x + 0, 0 + x and x - 0 with a constant of all ones (zeros) are x,
  when the result has x's type (the constant does not broadcast x to a bigger shape).
  All are exact, except that x + (+0.0) would turn a -0.0 into +0.0: equal values;
- dropout with p = 0 is the identity (it keeps everything and scales by 1).
"""
from __future__ import annotations

import numpy as np

from graphcnn.ir.graph import Graph, Node, Value
from graphcnn.passes.rewrite import constant_value, rewrite

RESHAPES = frozenset({"reshape", "flatten"})
# ops that are the identity when the output type equals the (first) input's type
IDENTITY_WHEN_SAME_TYPE = frozenset({"reshape", "flatten", "broadcast_to", "sum_to", "slice",
                                     "pad", "concat"})


def _all_equal(value: Value, number: float) -> bool:
    array = constant_value(value)
    return array is not None and bool(np.all(array == number))


def _identity_operand(node: Node, inputs: list[Value]) -> Value | None:
    """The operand x when the node is x*1, 1*x, x/1, x+0, 0+x or x-0 of x's type."""
    a, b = inputs
    out = node.outputs[0].type
    candidates: list[tuple[Value, Value, float]] = []   # (x, the constant, its value)
    if node.op in ("mul", "div"):
        candidates.append((a, b, 1.0))
        if node.op == "mul":
            candidates.append((b, a, 1.0))
    elif node.op in ("add", "sub"):
        candidates.append((a, b, 0.0))
        if node.op == "add":
            candidates.append((b, a, 0.0))
    for x, c, number in candidates:
        if x.type == out and _all_equal(c, number):
            return x
    return None


def algebraic_simplification(graph: Graph) -> Graph:
    def rule(g: Graph, node: Node, inputs: list[Value]) -> list[Value] | None:
        op = node.op
        if op in IDENTITY_WHEN_SAME_TYPE and len(inputs) == 1 \
                and inputs[0].type == node.outputs[0].type:
            return [inputs[0]]
        if op in RESHAPES:
            source = inputs[0]
            while source.node.op in RESHAPES:
                source = source.node.inputs[0]
            target = node.outputs[0].shape
            if source.shape == target:
                return [source]
            if source is not inputs[0]:
                return [g.add("reshape", [source], shape=target, loc=node.loc)]
            return None
        if op in ("add", "sub", "mul", "div"):
            x = _identity_operand(node, inputs)
            return None if x is None else [x]
        if op in ("dropout", "channel_dropout") and node.attrs["p"] == 0.0:
            return [inputs[0]]
        return None

    return rewrite(graph, rule)
