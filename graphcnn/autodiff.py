"""Reverse-mode autodiff: append the backward pass to a graph, from the ops' VJP rules.

The backward pass is graph nodes like any other, so it is optimized and lowered the same
way as the forward pass. Walks are iterative (no recursion limit on deep networks).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from graphcnn.ir.graph import Graph, Node, Value
from graphcnn.ops.registry import get_op


def _active_nodes(graph: Graph, loss: Value, wrt: Sequence[Value]) -> set[int]:
    """Ids of nodes that lie on a path from some `wrt` value to the loss."""
    depends_on_wrt: set[int] = set()          # value ids downstream of wrt
    wrt_ids = {v.id for v in wrt}
    for node in graph.nodes:
        if any(o.id in wrt_ids for o in node.outputs) or any(
                v.id in depends_on_wrt for v in node.inputs):
            depends_on_wrt.update(o.id for o in node.outputs)
        if loss in node.outputs:
            break
    active: set[int] = set()
    stack = [loss.node]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if node.id in seen:
            continue
        seen.add(node.id)
        if any(o.id in depends_on_wrt for o in node.outputs):
            active.add(node.id)
            stack.extend(v.node for v in node.inputs)
    return active


def grad(graph: Graph, loss: Value, wrt: Sequence[Value]) -> list[Value]:
    """Append to `graph` the nodes computing d(loss)/d(each of wrt); return them in order.

    `loss` must be a scalar. Fan-out is accumulated with `add`; an unreachable `wrt`
    gets a zero constant.
    """
    if loss.shape != ():
        raise ValueError(f"grad needs a scalar loss, got shape {loss.shape}")
    active = _active_nodes(graph, loss, wrt)
    cotangents: dict[int, Value] = {loss.id: graph.constant(np.ones((), loss.dtype))}

    def accumulate(value: Value, contribution: Value) -> None:
        if contribution.shape != value.shape:
            raise AssertionError(
                f"VJP of {value.node.op} gave a cotangent of shape {contribution.shape} "
                f"for a value of shape {value.shape}")
        previous = cotangents.get(value.id)
        cotangents[value.id] = (contribution if previous is None
                                else graph.add("add", [previous, contribution]))

    forward: list[Node] = [n for n in graph.nodes if n.id in active]
    for node in reversed(forward):
        outs = [cotangents.get(o.id) for o in node.outputs]
        if all(c is None for c in outs) or not node.inputs:
            continue
        in_cots = get_op(node.op).vjp(graph, node, outs)
        for value, contribution in zip(node.inputs, in_cots):
            if contribution is not None and value.node.id in active:
                accumulate(value, contribution)

    results = []
    for v in wrt:
        c = cotangents.get(v.id)
        results.append(c if c is not None else graph.constant(np.zeros(v.shape, v.dtype)))
    return results
