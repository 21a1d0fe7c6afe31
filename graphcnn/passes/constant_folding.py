"""Constant folding: a compute node whose inputs are all constants is evaluated once, now,
by its op's reference rule, and replaced by constants (of the same dtype).

Skipped, with the reason logged on the "graphcnn.passes" logger: results larger than
FOLD_LIMIT_BYTES (a graph should not carry a huge array that a cheap op makes at run
time) and nodes whose reference rule fails (the failure then surfaces at run time,
where it belongs).
"""
from __future__ import annotations

import numpy as np

from graphcnn.ir.graph import Graph, Node, Value
from graphcnn.ops.registry import get_op
from graphcnn.passes.rewrite import constant_value, log, rewrite

FOLD_LIMIT_BYTES = 64 * 2**20
SOURCES = frozenset({"input", "param", "constant"})


def constant_folding(graph: Graph, limit_bytes: int = FOLD_LIMIT_BYTES) -> Graph:
    def rule(g: Graph, node: Node, inputs: list[Value]) -> list[Value] | None:
        if node.op in SOURCES or any(v.node.op != "constant" for v in inputs):
            return None
        where = f"{node.op}{' at ' + node.loc if node.loc else ''}"
        size = sum(v.type.nbytes for v in node.outputs)
        if size > limit_bytes:
            log.info("constant_folding: not folding %s: its result would take %d bytes "
                     "(limit %d)", where, size, limit_bytes)
            return None
        try:
            with np.errstate(all="ignore"):
                results = get_op(node.op).run_ref([constant_value(v) for v in inputs],
                                                  node.attrs)
        except Exception as err:  # noqa: BLE001  (the run-time kernel will report it)
            log.warning("constant_folding: not folding %s: its reference rule failed: %s",
                        where, err)
            return None
        folded = []
        for value, array in zip(node.outputs, results):
            array = np.asarray(array)
            if array.shape != value.shape:
                log.warning("constant_folding: not folding %s: the reference rule returned "
                            "shape %s, the shape rule says %s", where, array.shape, value.shape)
                return None
            folded.append(array.astype(value.dtype, copy=False))
        return [g.add("constant", value=array, loc=node.loc) for array in folded]

    return rewrite(graph, rule)
