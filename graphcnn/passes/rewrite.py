"""The rewriting helper the graph passes share: walk the nodes in order, and let a rule
replace each one or copy it.

    new_graph = rewrite(graph, rule)

`rule(new_graph, node, inputs)` sees the old node and its inputs as values of the new
graph (already rewritten). It returns None to copy the node unchanged, or a list of
values of the new graph, one per output of the node, that stand for its outputs from
then on (values it made with `new_graph.add(..., loc=node.loc)`, or existing ones: an
identity). The input graph is never changed; output names are kept; a copied node keeps
its location. With `prune` (the default) the nodes nobody reads any more are dropped,
as dead-code elimination would (inputs stay: they are the executable's signature).
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

from graphcnn.ir.graph import Graph, Node, Value
from graphcnn.ir.rebuild import copy_graph

log = logging.getLogger("graphcnn.passes")

Rule = Callable[[Graph, Node, list[Value]], "Sequence[Value] | None"]


def rewrite(graph: Graph, rule: Rule, *, prune: bool = True) -> Graph:
    out = Graph(graph.name)
    mapping: dict[int, Value] = {}
    for node in graph.nodes:
        inputs = [mapping[v.id] for v in node.inputs]
        replacement = rule(out, node, inputs)
        if replacement is None:
            new = out.add_node(node.op, inputs, dict(node.attrs), loc=node.loc)
            replacement = new.outputs
        replacement = list(replacement)
        if len(replacement) != len(node.outputs):
            raise ValueError(f"rewrite rule replaced the {len(node.outputs)} output(s) of "
                             f"{node.op} with {len(replacement)} value(s)")
        for old, fresh in zip(node.outputs, replacement):
            if fresh.type != old.type:
                raise ValueError(f"rewrite rule replaced {node.op}'s output {old.type} with "
                                 f"a value of type {fresh.type}")
            mapping[old.id] = fresh
    out.set_outputs([mapping[v.id] for v in graph.outputs], graph.output_names)
    return prune_dead(out) if prune else out


def prune_dead(graph: Graph) -> Graph:
    """Drop the nodes the outputs do not depend on (inputs stay). Returns the graph itself
    when nothing is dead, else a pruned copy."""
    live: set[int] = set()
    stack = [v.node for v in graph.outputs]
    while stack:
        node = stack.pop()
        if node.id not in live:
            live.add(node.id)
            stack.extend(v.node for v in node.inputs)
    live |= {n.id for n in graph.nodes if n.op == "input"}
    if len(live) == len(graph.nodes):
        return graph
    return copy_graph(graph, keep=lambda node: node.id in live)


def constant_value(value: Value):
    """The array of a value made by a `constant` node, or None."""
    return value.node.attrs["value"] if value.node.op == "constant" else None
