"""Batch norm as elementwise ops: an inference `batch_norm` that batch-norm folding left
(it does not follow a conv2d or linear: DenseNet's pre-activation blocks, concat ->
batch_norm -> relu -> conv) becomes

    (x - running_mean) * scale + bias,   scale = weight / sqrt(running_var + eps)

a `sub`, a `mul` and an `add` with per-channel constants shaped to broadcast along axis 1
of x ((C,) for a 2-D x, (C, 1) for 3-D, (C, 1, 1) for 4-D, ...). Fusion
(passes/fusion.py) then runs them with the relu after them, or in the epilogue of an
anchor before them, as one kernel, where a batch_norm, having no scalar formula, was a
kernel of its own. The order of the arithmetic is the reference's (graphcnn/ops/norm.py),
not the shorter x * scale + shift: with shift = bias - mean * scale, a large mean against
a small spread would cancel in float32 and lose digits the reference keeps.

It applies where batch-norm folding could (see bn_folding.bn_scale): the four
batch-norm tensors are constants, all finite, with running_var + eps > 0 per channel, and
the scale is finite in x's dtype; otherwise the batch_norm stays, so that the infinities
and NaNs of a zero variance are the reference's. Training graphs are untouched: their
batch norms are `batch_norm_train`, and their weights are params, not constants.
"""
from __future__ import annotations

import numpy as np

from graphcnn.ir.graph import Graph, Node, Value
from graphcnn.passes.bn_folding import bn_scale
from graphcnn.passes.rewrite import log, rewrite


def batch_norm_to_affine(graph: Graph) -> Graph:
    def rule(g: Graph, node: Node, inputs: list[Value]) -> list[Value] | None:
        if node.op != "batch_norm":
            return None
        where = f"batch_norm{' at ' + node.loc if node.loc else ''}"
        stats = bn_scale(node)
        x = inputs[0]
        dtype = x.dtype
        if not isinstance(stats, str):
            with np.errstate(over="ignore"):
                if not np.all(np.isfinite(stats[0].astype(dtype))):
                    stats = f"its scale overflows {dtype}"
        if isinstance(stats, str):
            log.info("batch_norm_to_affine: keeping %s: %s", where, stats)
            return None
        channel = (x.shape[1],) + (1,) * (x.type.ndim - 2)
        names = [v.node.attrs.get("name", "") for v in node.inputs[1:]]

        def constant(array: np.ndarray, name: str) -> Value:
            value = array.astype(dtype).reshape(channel)
            return g.add("constant", value=value, name=name, loc=node.loc)

        scale, mean, beta = stats
        centred = g.add("sub", [x, constant(mean, names[2])], loc=node.loc)
        scaled = g.add("mul", [centred, constant(scale, names[0])], loc=node.loc)
        return [g.add("add", [scaled, constant(beta, names[1])], loc=node.loc)]

    return rewrite(graph, rule)
