"""The IR's invariants, checked after every pass."""
from __future__ import annotations

from graphcnn.errors import VerificationError
from graphcnn.ir.graph import Graph
from graphcnn.ir.rules import op_rules


def verify(graph: Graph) -> None:
    """Raise VerificationError naming the node if the graph breaks an invariant:
    topological order, one producer per value, types agreeing with the op's rules."""
    defined: set[int] = set()
    names: set[str] = set()
    for position, node in enumerate(graph.nodes):
        where = f"node {position} ({node.op}{' at ' + node.loc if node.loc else ''})"
        for v in node.inputs:
            if v.id not in defined:
                raise VerificationError(f"{where} reads %{v.id} before it is defined")
        inferred = op_rules(node.op).infer([v.type for v in node.inputs], node.attrs)
        if inferred != [v.type for v in node.outputs]:
            raise VerificationError(f"{where}: output types {[str(v.type) for v in node.outputs]} "
                                    f"differ from its shape rule {[str(t) for t in inferred]}")
        for v in node.outputs:
            if v.id in defined or v.node is not node:
                raise VerificationError(f"{where} redefines %{v.id}")
            defined.add(v.id)
        if node.op in ("input", "param"):
            if node.attrs["name"] in names:
                raise VerificationError(f"{where}: duplicate source name {node.attrs['name']!r}")
            names.add(node.attrs["name"])
    for v in graph.outputs:
        if v.id not in defined:
            raise VerificationError(f"graph output %{v.id} is not defined by any node")
    if len(graph.outputs) != len(graph.output_names):
        raise VerificationError("graph outputs and output names differ in number")
