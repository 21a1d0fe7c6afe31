"""Average pooling before a 1x1 convolution instead of after it: `avg_pool2d(conv2d(x))`
becomes `conv2d(avg_pool2d(x))` where the convolution is 1x1 (stride 1, no padding).

A 1x1 convolution is the same linear map at every pixel, and an unpadded average pool is
a weighted sum of pixels whose weights add up to 1 in every window, so the two commute,
the bias included (the average of a constant is the constant). The convolution then runs
on the pooled pixels: DenseNet's transition layers (batch norm -> relu -> 1x1 conv -> 2x2
average pool) do a quarter of their multiply-adds, 8% of DenseNet-121's, for a pool over
the convolution's input channels instead of its output channels (twice as many there).
The results differ from the other order by float rounding only.

It applies where the convolution's output is read by the pool alone (and is not a graph
output), the pool has no padding, and it shrinks the image (otherwise nothing is saved).
"""
from __future__ import annotations

from graphcnn.ir.graph import Graph, Node, Value
from graphcnn.passes.rewrite import rewrite


def _pointwise_conv(node: Node) -> bool:
    if node.op != "conv2d":
        return False
    weight = node.inputs[1].shape
    return (len(weight) == 4 and weight[2:] == (1, 1)
            and tuple(node.attrs["stride"]) == (1, 1) and not any(node.attrs["padding"]))


def _shrinking_pool(node: Node) -> bool:
    return (node.op == "avg_pool2d" and not any(node.attrs["padding"])
            and node.outputs[0].type.size < node.inputs[0].type.size)


def pool_before_pointwise_conv(graph: Graph) -> Graph:
    users = graph.users()
    outputs = {v.id for v in graph.outputs}
    pools = set()   # ids of the pools to run before their convolution
    for node in graph.nodes:
        if _shrinking_pool(node):
            conv, y = node.inputs[0].node, node.inputs[0]
            if (_pointwise_conv(conv) and y.id not in outputs
                    and [r.id for r in users.get(y.id, [])] == [node.id]):
                pools.add(node.id)
    if not pools:
        return graph

    def rule(g: Graph, node: Node, inputs: list[Value]) -> list[Value] | None:
        if node.id not in pools:
            return None
        # The convolution was copied as it came; the copy, read by nothing once this pool
        # is replaced, is pruned.
        conv = inputs[0].node
        pooled = g.add_node("avg_pool2d", [conv.inputs[0]], dict(node.attrs),
                            loc=node.loc).outputs[0]
        return g.add_node("conv2d", [pooled, *conv.inputs[1:]], dict(conv.attrs),
                          loc=conv.loc).outputs

    return rewrite(graph, rule)
