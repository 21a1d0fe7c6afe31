"""The NumPy interpreter: slow and obviously right; the oracle for every other backend."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from graphcnn.ir.graph import Graph, Node, Value
from graphcnn.ir.types import TensorType
from graphcnn.ops.registry import get_op
from graphcnn.runtime.runner import CallContext, Runner


class ReferenceRunner(Runner):
    """Evaluates each node with its op's NumPy reference rule (a step's kernel), into new
    arrays at every call: no memory plan, nothing shared between calls."""

    name = "reference"

    def __init__(self, graph: Graph) -> None:
        self._types: dict[int, TensorType] = {}   # what each step's outputs must be
        super().__init__(graph, plan=None)

    def place(self, value: Value, arena: Any) -> None:
        self._types[value.id] = value.type

    def build_kernel(self, node: Node) -> Callable[..., Any]:
        return get_op(node.op).run_ref

    def feed(self, context: CallContext, feeds: dict[int, Any]) -> dict[int, Any]:
        env = dict(context.buffers)   # the constants: each call writes a dict of its own
        env.update(feeds)
        return env

    def launch(self, context: CallContext, env: dict[int, Any]) -> None:
        for step in self.steps:
            results = step.kernel([env[i] for i in step.inputs], step.attrs)
            for vid, array in zip(step.outputs, results):
                array = np.asarray(array)
                want = self._types[vid]
                if array.shape != want.shape or array.dtype != np.dtype(want.dtype):
                    raise AssertionError(
                        f"reference rule of {step.op} returned {array.dtype}{array.shape}, "
                        f"its shape rule says {want}")
                env[vid] = array

    def collect(self, env: dict[int, Any]) -> list[np.ndarray]:
        return [env[v.id] for v in self.graph.outputs]


class DynamicReferenceRunner(ReferenceRunner):
    """The reference runner of a graph built at its maximum batch, for any batch up to it
    (graphcnn/runtime/dynamic_batch.py): `run_at(feeds, batch)` runs the graph replayed at
    `batch`, made the first time a call asks for it."""

    def __init__(self, graph: Graph) -> None:
        from graphcnn.runtime.dynamic_batch import max_batch_of
        super().__init__(graph)
        self.max_batch = max_batch_of(graph)
        self._at: dict[int, ReferenceRunner] = {self.max_batch: self}

    def run_at(self, feeds: dict[int, Any], batch: int) -> list[Any]:
        runner = self._at.get(batch)
        if runner is None:   # two threads may both build it: the same runner either way
            from graphcnn.runtime.dynamic_batch import rebatch
            runner = self._at[batch] = ReferenceRunner(rebatch(self.graph, batch))
        return runner.run(feeds)
