"""A concatenation whose one reader is an elementwise chain runs as that chain's anchor:
each part goes through the chain straight into its channels of the result, and the
concatenation is never written (the cpu backend's pass, for inference graphs).

DenseNet's dense layers read every feature map before them as
concat -> batch norm -> relu -> 1x1 conv, and the batch norm becomes sub/mul/add constants
(passes/bn_affine.py). At batch 1 the memory plan makes those concatenations free: each
part is written in its slice of the output (runtime/memory_plan.py). Beyond batch 1 a
channel slice of an (N, C, H, W) buffer is not contiguous, so each concatenation copied
every feature map so far, and the batch norm read the copy again: at batch 16, DenseNet-121's
58 concatenations took about as long as its 62 batch norms.

Here, for concatenations along axis 1 of 4-d values at a batch above 1:

1. A concatenation of concatenations (concat(concat(x0, n1), n2); torchvision's DenseNet
   concatenates the list of every feature map instead) reads their parts directly
   (concat(x0, n1, n2)), so that an inner one read by its own chain besides need not be
   written either;
2. the concatenation and the chain after it (fusion's links, passes/fusion.py) become one
   `fused` node with the anchor `concat`, which the cpu backend runs part by part
   (backends/cpu/kernels/fused.py: concat_epilogue_step).

At batch 1 nothing changes: the concatenation is free there already, and a launch per
part would cost more than it saves.
"""
from __future__ import annotations

from graphcnn.ir.graph import Graph, Node, Value
from graphcnn.passes.fusion import find_groups, fuse_groups, next_link
from graphcnn.passes.rewrite import rewrite


def _channel_concat(node: Node) -> bool:
    """A concatenation along the channels of 4-d values, beyond batch 1."""
    if node.op != "concat":
        return False
    out = node.outputs[0]
    return (out.type.ndim == 4 and node.attrs["axis"] % 4 == 1 and out.shape[0] > 1
            and all(v.type.ndim == 4 for v in node.inputs))


def _heads(graph: Graph) -> set[int]:
    """The ids of the channel concatenations an elementwise chain follows."""
    users = graph.users()
    outputs = {v.id for v in graph.outputs}
    return {n.id for n in graph.nodes
            if _channel_concat(n) and next_link(n.outputs[0], users, outputs) is not None}


def fuse_concat_epilogues(graph: Graph) -> Graph:
    if not any(_channel_concat(n) for n in graph.nodes):
        return graph

    def flatten(g: Graph, node: Node, inputs: list[Value]) -> list[Value] | None:
        # Every one, fused or not: beyond batch 1 an inner concatenation is a copy either
        # way, and one read by nothing but outer ones and its chain is then not written.
        if not _channel_concat(node) or not any(_channel_concat(v.node) for v in inputs):
            return None
        parts: list[Value] = []
        for v in inputs:
            parts.extend(v.node.inputs if v.node.op == "concat" and _channel_concat(v.node)
                         else [v])
        return [g.add("concat", parts, axis=1, loc=node.loc)]

    flat = rewrite(graph, flatten)
    chosen = _heads(flat)
    return fuse_groups(flat, find_groups(flat, heads=lambda n: n.id in chosen))
