"""Training batch norm with its activation: `batch_norm_train -> relu` (or `-> clip`,
ReLU6) becomes one `batch_norm_train` with `activation="relu"` (or "clip", low, high),
which applies the activation where it writes y.

Fusion (passes/fusion.py) cannot do it: batch_norm_train is OPAQUE (its statistics
need the whole channel before the first output) and has three outputs. The pass saves a
read and a write of every activation of such a pair, and a kernel: MobileNetV2's 35
ReLU6 and ResNet's relus follow training batch norms.

It applies only where the relu (or clip) is the one reader of y and y is not a graph
output: another reader would need y before the activation. In a training graph that
holds because the activations' gradients read their *output* (ops/elementwise.py), and
batch_norm_train_grad reads the batch norm's input x, not y. The result is the bits the
two ops gave (the reference applies the activation to the rounded y: ops/norm.py), and
its VJP is the activation's gradient then the batch norm's, so the pass may run before
or after autodiff.
"""
from __future__ import annotations

from graphcnn.ir.graph import Graph, Node, Value
from graphcnn.passes.rewrite import rewrite

_ACTIVATIONS = ("relu", "clip")


def _activation_after(node: Node, users: dict[int, list[Node]], outputs: set[int]
                      ) -> Node | None:
    """The relu or clip that alone reads `node`'s y, if `node` is a plain training batch
    norm."""
    if node.op != "batch_norm_train" or node.attrs.get("activation"):
        return None
    y = node.outputs[0]
    readers = users.get(y.id, [])
    if y.id in outputs or len(readers) != 1 or readers[0].op not in _ACTIVATIONS:
        return None
    return readers[0]


def fuse_batch_norm_activation(graph: Graph) -> Graph:
    users = graph.users()
    outputs = {v.id for v in graph.outputs}
    absorbed: set[int] = set()   # ids of the activation nodes now inside a batch norm

    def rule(g: Graph, node: Node, inputs: list[Value]) -> list[Value] | None:
        if node.id in absorbed:
            return [inputs[0]]   # the batch norm's y already is this activation's output
        activation = _activation_after(node, users, outputs)
        if activation is None:
            return None
        absorbed.add(activation.id)
        attrs = dict(node.attrs, activation=activation.op)
        if activation.op == "clip":
            attrs.update(low=activation.attrs["low"], high=activation.attrs["high"])
        return g.add_node(node.op, inputs, attrs, loc=node.loc).outputs

    return rewrite(graph, rule)
