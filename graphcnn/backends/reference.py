"""The NumPy interpreter: slow and obviously right; the oracle for every other backend."""
from __future__ import annotations

import numpy as np

from graphcnn.ir.graph import Graph
from graphcnn.ops.registry import get_op


class ReferenceRunner:
    """Evaluates each node with its op's NumPy reference rule."""

    name = "reference"

    def __init__(self, graph: Graph) -> None:
        self.graph = graph

    def run(self, feeds: dict[int, np.ndarray]) -> list[np.ndarray]:
        """feeds: value id -> array for every input and param; returns the outputs."""
        env: dict[int, np.ndarray] = dict(feeds)
        for node in self.graph.nodes:
            if node.op in ("input", "param"):
                continue
            args = [env[v.id] for v in node.inputs]
            results = get_op(node.op).run_ref(args, node.attrs)
            for value, array in zip(node.outputs, results):
                array = np.asarray(array)
                if array.shape != value.shape or array.dtype != np.dtype(value.dtype):
                    raise AssertionError(
                        f"reference rule of {node.op} returned {array.dtype}{array.shape}, "
                        f"its shape rule says {value.type}")
                env[value.id] = array
        return [env[v.id] for v in self.graph.outputs]
