"""Batch-norm folding: an inference `batch_norm` right after a `conv2d` (or `linear`)
becomes part of it.

    bn(conv(x, w, b)) = conv(x, w * s, (b - mean) * s + beta),   s = gamma / sqrt(var + eps)

per output channel, computed in float64 and cast back to the weight's dtype. It applies
when the conv's output is read by that batch_norm alone (and is no graph output), and the
conv's weight and bias and all four batch-norm tensors are constants (a frozen inference
graph). It declines, logging why on the "graphcnn.passes" logger, when var + eps <= 0 or
any value is not finite (e.g. zero variance with eps = 0): the unfolded graph computes
what the model says, infinities and NaNs included.
"""
from __future__ import annotations

import numpy as np

from graphcnn.ir.graph import Graph, Node, Value
from graphcnn.passes.rewrite import constant_value, log, rewrite

FOLDABLE = frozenset({"conv2d", "linear"})


def bn_scale(bn: Node) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
    """(scale, mean, beta) of an inference batch_norm in float64, scale = gamma /
    sqrt(var + eps), or the reason it cannot be folded: a weight or statistic that is not
    a constant or not finite, or var + eps <= 0 in some channel. Shared with the affine
    rewrite (bn_affine.py), so that both decline on the same batch norms."""
    arrays = [constant_value(v) for v in bn.inputs[1:]]
    if any(a is None for a in arrays):
        return "not all of its weights and statistics are constants"
    gamma, beta, mean, var = (a.astype(np.float64) for a in arrays)
    if not all(np.all(np.isfinite(a)) for a in (gamma, beta, mean, var)):
        return "a weight or statistic is not finite"
    denom = var + bn.attrs["eps"]
    if np.any(denom <= 0):
        channels = np.flatnonzero(denom <= 0).tolist()
        return (f"running_var + eps <= 0 in channel(s) {channels[:8]}"
                f"{'...' if len(channels) > 8 else ''} (eps={bn.attrs['eps']})")
    return gamma / np.sqrt(denom), mean, beta


def _folded(conv: Node, bn: Node) -> tuple[np.ndarray, np.ndarray] | str:
    """(weight, bias) of the folded conv, or the reason it cannot be folded."""
    stats = bn_scale(bn)
    if isinstance(stats, str):
        return stats
    scale, mean, beta = stats
    arrays = [constant_value(v) for v in conv.inputs[1:]]
    if any(a is None for a in arrays):
        return "not all of its weights and statistics are constants"
    w = arrays[0].astype(np.float64)
    b = arrays[1].astype(np.float64) if len(arrays) == 2 else np.zeros(w.shape[0])
    if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
        return "a weight or statistic is not finite"
    new_w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
    new_b = (b - mean) * scale + beta
    if not (np.all(np.isfinite(new_w)) and np.all(np.isfinite(new_b))):
        return "the folded weights are not finite"
    dtype = conv.inputs[1].dtype
    return new_w.astype(dtype), new_b.astype(dtype)


def fold_batch_norm(graph: Graph) -> Graph:
    users = graph.users()
    output_ids = {v.id for v in graph.outputs}

    def rule(g: Graph, node: Node, inputs: list[Value]) -> list[Value] | None:
        if node.op != "batch_norm":
            return None
        produced = node.inputs[0]
        conv = produced.node
        if conv.op not in FOLDABLE or produced.id in output_ids \
                or len(users.get(produced.id, [])) != 1:
            return None
        where = f"batch_norm{' at ' + node.loc if node.loc else ''}"
        result = _folded(conv, node)
        if isinstance(result, str):
            log.info("fold_batch_norm: not folding %s into its %s: %s", where, conv.op, result)
            return None
        weight, bias = result
        # labels: the conv's weight name, and its bias name (or the batch norm's)
        names = [v.node.attrs["name"] for v in conv.inputs[1:] + node.inputs[2:3]]
        x = inputs[0].node.inputs[0]       # the conv's input: the conv was copied as it is
        new_w = g.add("constant", value=weight, name=names[0], loc=conv.loc)
        new_b = g.add("constant", value=bias, name=names[1], loc=conv.loc)
        return [g.add(conv.op, [x, new_w, new_b], loc=conv.loc, **conv.attrs)]

    return rewrite(graph, rule)
