"""Copying a graph node by node: the base of every pass (passes never mutate)."""
from __future__ import annotations

from typing import Any, Callable

from graphcnn.ir.graph import Graph, Node, Value


def copy_graph(graph: Graph, keep: Callable[[Node], bool] = lambda node: True) -> Graph:
    """A new graph with the nodes for which `keep` is true (their inputs must be kept)."""
    out = Graph(graph.name)
    mapping: dict[int, Value] = {}
    for node in graph.nodes:
        if not keep(node):
            continue
        new = out.add_node(node.op, [mapping[v.id] for v in node.inputs], dict(node.attrs),
                           loc=node.loc)
        for old, fresh in zip(node.outputs, new.outputs):
            mapping[old.id] = fresh
    out.set_outputs([mapping[v.id] for v in graph.outputs], graph.output_names)
    return out


# (op, inputs as old-graph values, attrs, loc) of a node that stands for a group of nodes
Replacement = tuple[str, list[Value], dict[str, Any], "str | None"]


def replace_groups(graph: Graph, replacements: dict[int, Replacement],
                   removed: set[int]) -> Graph:
    """A copy of `graph` with each group of nodes made one node: the node whose id keys
    `replacements` (a group's last) becomes the node given there, taking its outputs' place;
    the nodes in `removed` (the rest of each group, whose values nothing outside the group
    reads) are dropped. Placing each at its group's last node keeps the graph in order:
    every input of the group was made before the group's last member."""
    out = Graph(graph.name)
    mapping: dict[int, Value] = {}
    for node in graph.nodes:
        if node.id in removed:
            continue
        if node.id in replacements:
            op, inputs, attrs, loc = replacements[node.id]
            new = out.add_node(op, [mapping[v.id] for v in inputs], attrs, loc=loc)
        else:
            new = out.add_node(node.op, [mapping[v.id] for v in node.inputs],
                               dict(node.attrs), loc=node.loc)
        for old, fresh in zip(node.outputs, new.outputs):
            mapping[old.id] = fresh
    out.set_outputs([mapping[v.id] for v in graph.outputs], graph.output_names)
    return out
