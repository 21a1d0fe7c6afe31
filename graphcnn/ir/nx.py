"""A networkx view of a graph (for graph algorithms) and DOT export."""
from __future__ import annotations

import networkx as nx

from graphcnn.ir.graph import Graph


def to_networkx(graph: Graph) -> nx.MultiDiGraph:
    """Nodes are node ids (with op, attrs, loc); an edge per input use."""
    dag = nx.MultiDiGraph(name=graph.name)
    for node in graph.nodes:
        label = f"{node.op}\\n{', '.join(str(v.type) for v in node.outputs)}"
        dag.add_node(node.id, op=node.op, label=label)
        for index, value in enumerate(node.inputs):
            dag.add_edge(value.node.id, node.id, value=value.id, index=index)
    return dag


def to_dot(graph: Graph) -> str:
    """DOT text of the graph, readable by Graphviz."""
    lines = [f'digraph "{graph.name}" {{', "  node [shape=box, fontname=monospace];"]
    for node in graph.nodes:
        types = ", ".join(str(v.type) for v in node.outputs)
        extra = f" {node.attrs['name']}" if "name" in node.attrs and node.attrs["name"] else ""
        lines.append(f'  n{node.id} [label="{node.op}{extra}\\n{types}"];')
    for node in graph.nodes:
        for value in node.inputs:
            lines.append(f"  n{value.node.id} -> n{node.id};")
    for name, value in zip(graph.output_names, graph.outputs):
        lines.append(f'  out_{abs(hash(name)) % 10**8} [label="{name}", shape=ellipse];')
        lines.append(f"  n{value.node.id} -> out_{abs(hash(name)) % 10**8};")
    lines.append("}")
    return "\n".join(lines)
