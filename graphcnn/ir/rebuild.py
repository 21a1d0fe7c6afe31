"""Copying a graph node by node: the base of every pass (passes never mutate)."""
from __future__ import annotations

from typing import Callable

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
