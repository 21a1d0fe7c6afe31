"""Operator fusion in the manner of TVM's FuseOps, for chains, decided by the ops' fusion
kinds (`OpDef.kind`, graphcnn/ops/registry.py).

An *anchor* whose output loop takes an elementwise epilogue (FusionKind
OUT_ELEMWISE_FUSABLE: conv2d and its gradients, linear/matmul, pooling) absorbs the chain
of ELEMWISE and BROADCAST ops that follows it, as long as each link is the only reader of
the value before it and keeps its shape (a broadcast op's other operands may be smaller:
they are read through broadcast views): conv + bias + relu, conv + add + relu (the
ResNet residual), conv-input-grad + relu-grad in the backward pass. A chain of such ops
with no anchor in front becomes one elementwise kernel. INJECTIVE, REDUCTION and OPAQUE
ops never join a group: an epilogue computes each output element from the same element
of its operands, and cannot move or combine elements. A link must also have a scalar
formula (`OpDef.scalar`), which is what the code generators lower
(graphcnn/backends/lowering.py); an ELEMWISE op without one (dropout, which draws a mask)
stays its own kernel. Each group becomes
one `fused` node (graphcnn/ops/fused.py), placed where its last member was, which keeps the
graph topologically ordered: every side input of the chain was made before the member that
reads it, and the chain's inner values have no readers outside it.
"""
from __future__ import annotations

from typing import Any, Callable

from graphcnn.ir.graph import Graph, Node, Value
from graphcnn.ir.rebuild import replace_groups
from graphcnn.ops.registry import FusionKind, get_op


def _is_elementwise(node: Node) -> bool:
    """Whether `node` can be a link of an epilogue chain."""
    op = get_op(node.op)
    return (op.kind <= FusionKind.BROADCAST and op.scalar is not None
            and len(node.outputs) == 1)


def _is_anchor(node: Node) -> bool:
    return get_op(node.op).kind == FusionKind.OUT_ELEMWISE_FUSABLE and len(node.outputs) == 1


def next_link(value: Value, users: dict[int, list[Node]], outputs: set[int]) -> Node | None:
    """The node that can extend a chain ending in `value`, if any."""
    readers = users.get(value.id, [])
    if value.id in outputs or len(readers) != 1:
        return None
    node = readers[0]
    out = node.outputs[0] if node.outputs else None
    if not _is_elementwise(node) or out is None or out.type != value.type:
        return None
    if sum(1 for v in node.inputs if v.id == value.id) != 1:
        return None  # reads the running value twice (x * x): keep it simple, do not fuse
    return node


def find_groups(graph: Graph, heads: Callable[[Node], bool] | None = None
                ) -> list[list[Node]]:
    """Chains of nodes to fuse, each of length >= 2, in graph order; each starts at a node
    for which `heads` holds (default: an anchor or an elementwise op)."""
    users = graph.users()
    outputs = {v.id for v in graph.outputs}
    taken: set[int] = set()
    groups = []
    for node in graph.nodes:
        if node.id in taken or not (heads(node) if heads is not None else
                                    _is_anchor(node) or _is_elementwise(node)):
            continue
        chain = [node]
        link = next_link(node.outputs[0], users, outputs)
        while link is not None and link.id not in taken:
            chain.append(link)
            link = next_link(link.outputs[0], users, outputs)
        if len(chain) >= 2:
            groups.append(chain)
            taken |= {n.id for n in chain}
    return groups


def _group_node(chain: list[Node]) -> tuple[list[Value], dict[str, Any]]:
    """The inputs and attributes of the fused node for a chain (old-graph values)."""
    head = chain[0]
    inputs: list[Value] = []

    def ref(value: Value) -> int:
        for k, v in enumerate(inputs):
            if v.id == value.id:
                return k
        inputs.append(value)
        return len(inputs) - 1

    steps = []
    if not _is_elementwise(head):   # an anchor
        inputs.extend(head.inputs)
        anchor, anchor_attrs, rest = head.op, dict(head.attrs), chain[1:]
    else:
        anchor, anchor_attrs, rest = "", {}, chain
    anchor_inputs = len(inputs)
    running = head.outputs[0] if anchor else None
    for node in rest:
        refs = tuple(-1 if running is not None and v.id == running.id else ref(v)
                     for v in node.inputs)
        steps.append((node.op, dict(node.attrs), refs))
        running = node.outputs[0]
    return inputs, {"anchor": anchor, "anchor_attrs": anchor_attrs,
                    "anchor_inputs": anchor_inputs, "steps": tuple(steps)}


def fuse_operators(graph: Graph) -> Graph:
    return fuse_groups(graph, find_groups(graph))


def fuse_groups(graph: Graph, groups: list[list[Node]]) -> Graph:
    """`graph` with each chain of `groups` (find_groups) as one fused node."""
    replacements = {}
    for chain in groups:
        inputs, attrs = _group_node(chain)
        replacements[chain[-1].id] = ("fused", inputs, attrs, chain[0].loc)
    return replace_groups(graph, replacements, {n.id for chain in groups for n in chain[:-1]})
