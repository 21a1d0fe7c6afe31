"""Floating-point operations of a graph, counted from its ops' shapes.

Only the multiply-add work is counted (what an SGEMM roof measures), 2 FLOPs per
multiply-add:

    conv2d, conv2d_input_grad, conv2d_weight_grad   2 * N * O * OH * OW * (C/groups) * kH * kW
    conv2d_blocked                                  the same (O from its weight)
    expand_depthwise_blocked                        its 1x1 conv's + its depthwise conv's
    linear                                          2 * N * in * out
    matmul                                          2 * M * K * N

with (N, O, OH, OW) the convolution's output (the `dy` of the gradient ops). Elementwise
ops, batch norm, pooling and losses are memory-bound and left out (they are a few percent
of a CNN's arithmetic). A fused group counts its anchor.
"""
from __future__ import annotations

from typing import Any, Sequence

from graphcnn.ir.graph import Graph, Node

DENSE_OPS = ("conv2d", "conv2d_input_grad", "conv2d_weight_grad", "conv2d_blocked",
             "expand_depthwise_blocked", "linear", "matmul")


def op_flops(op: str, in_shapes: Sequence[tuple[int, ...]], out_shape: tuple[int, ...],
             attrs: dict[str, Any]) -> int:
    """FLOPs of one op (0 for the ops that are not counted)."""
    if op == "fused":
        anchor = attrs.get("anchor") or ""
        if not anchor:
            return 0
        head = list(in_shapes[:attrs["anchor_inputs"]])
        anchor_out = out_shape  # elementwise steps keep the anchor's shape
        return op_flops(anchor, head, anchor_out, attrs["anchor_attrs"])
    if op == "conv2d_blocked":  # (N, O/16, OH, OW, 16): the real O is the weight's
        (n, _, oh, ow, _), w = out_shape, in_shapes[1]
        return 2 * n * w[0] * oh * ow * w[1] * w[2] * w[3]
    if op == "expand_depthwise_blocked":  # (x, w1, b1, w2, b2): x (N, C/16, H, W, 16)
        (n, _, h, wd, _), w1, w2 = in_shapes[0], in_shapes[1], in_shapes[3]
        _, _, oh, ow, _ = out_shape
        return 2 * n * w1[0] * (h * wd * w1[1] + oh * ow * w2[2] * w2[3])
    if op in ("conv2d", "conv2d_input_grad", "conv2d_weight_grad"):
        if op == "conv2d":
            (n, o, oh, ow), w = out_shape, in_shapes[1]
        elif op == "conv2d_input_grad":      # (dy, w) -> dx
            (n, o, oh, ow), w = in_shapes[0], in_shapes[1]
        else:                                # (dy, x) -> dw
            (n, o, oh, ow), w = in_shapes[0], out_shape
        _, per_group, kh, kw = w
        return 2 * n * o * oh * ow * per_group * kh * kw
    if op == "linear":
        (n, k), (out, _) = in_shapes[0], in_shapes[1]
        return 2 * n * k * out
    if op == "matmul":
        a = in_shapes[0]
        k = a[0] if attrs.get("trans_a") else a[1]
        return 2 * out_shape[0] * out_shape[1] * k
    return 0


def node_flops(node: Node) -> int:
    return op_flops(node.op, [v.shape for v in node.inputs], node.outputs[0].shape,
                    node.attrs)


def graph_flops(graph: Graph) -> int:
    """The FLOPs of one run of `graph` (see the module docstring for what counts)."""
    return sum(node_flops(n) for n in graph.compute_nodes())


def flops_by_op(graph: Graph) -> dict[str, int]:
    """FLOPs per (anchor) op name, for reports."""
    out: dict[str, int] = {}
    for n in graph.compute_nodes():
        f = node_flops(n)
        if f:
            op = n.attrs["anchor"] if n.op == "fused" else n.op
            out[op] = out.get(op, 0) + f
    return out
