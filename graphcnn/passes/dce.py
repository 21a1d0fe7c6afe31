"""Dead-code elimination: keep the nodes the outputs depend on (networkx ancestors)."""
from __future__ import annotations

import networkx as nx

from graphcnn.ir.graph import Graph
from graphcnn.ir.nx import to_networkx
from graphcnn.ir.rebuild import copy_graph


def dead_code_elimination(graph: Graph) -> Graph:
    dag = to_networkx(graph)
    keep: set[int] = set()
    for value in graph.outputs:
        keep.add(value.node.id)
        keep |= nx.ancestors(dag, value.node.id)
    # Inputs stay even when unused: they are the executable's signature.
    keep |= {n.id for n in graph.nodes if n.op == "input"}
    return copy_graph(graph, keep=lambda node: node.id in keep)
