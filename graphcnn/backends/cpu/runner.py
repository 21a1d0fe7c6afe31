"""Runs a graph's nodes as cpu kernels over buffers allocated once, at compile time: views
into one arena laid out by the memory plan (graphcnn/runtime/memory_plan.py). Each node's
implementation is chosen once, here (backends/cpu/strategy.py), and kept with its step."""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.backends.cpu.blas import one_thread_pool
from graphcnn.backends.cpu.registry import KernelFn, launch_mode
from graphcnn.backends.cpu.strategy import Implementation, implementation
from graphcnn.ir.graph import Graph
from graphcnn.runtime.memory_plan import ALIGN, MemoryPlan, plan_memory


class CpuRunner:
    name = "cpu"

    def __init__(self, graph: Graph, plan: MemoryPlan | None = None,
                 implementations: dict[int, str] | None = None) -> None:
        """`implementations`: node id -> the implementation name to run it with (an
        artifact's), instead of choosing again."""
        self.graph = graph
        self.plan = plan if plan is not None else plan_memory(graph)
        self.arena = _aligned_bytes(self.plan.arena_bytes)
        self.buffers: dict[int, np.ndarray] = {}
        self.steps: list[tuple[KernelFn, list[int], list[int], dict[str, Any], str]] = []
        self.launch_table: Any = None  # precompiled kernels (an artifact's), see aot.py
        # (node id, op, Implementation) of each step, in step order
        self.chosen: list[tuple[int, str, Implementation]] = []
        saved = implementations or {}
        for node in graph.nodes:
            if node.op in ("input", "param"):
                continue
            if node.op == "constant":
                self.buffers[node.output.id] = np.require(node.attrs["value"], requirements="C")
                continue
            for value in node.outputs:
                self.buffers[value.id] = self._view(value.id, value.shape, value.dtype)
            if node.id in self.plan.views:
                continue  # a reshape over its own input's memory: nothing to run
            chosen = implementation(node, self.buffers, saved.get(node.id))
            self.steps.append((chosen.run, [v.id for v in node.inputs],
                               [v.id for v in node.outputs], node.attrs, node.op))
            self.chosen.append((node.id, node.op, chosen))

    def _view(self, vid: int, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        offset = self.plan.offsets[vid]
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        return self.arena[offset:offset + nbytes].view(dtype).reshape(shape)

    def implementations(self) -> list[tuple[int, str, str, str]]:
        """(node id, op, implementation name, why) of each step, in step order."""
        return [(node_id, op, chosen.name, chosen.why) for node_id, op, chosen in self.chosen]

    @property
    def allocated_bytes(self) -> int:
        return self.plan.arena_bytes

    def run(self, feeds: dict[int, np.ndarray]) -> list[np.ndarray]:
        """feeds: value id -> array for every input and param; returns the outputs."""
        buffers = self.buffers
        for vid, array in feeds.items():
            buffers[vid] = np.require(array, requirements="C")
        # One thread pool (Numba's) for every kernel, GEMMs included: see blas.py.
        with one_thread_pool(), launch_mode(table=self.launch_table):
            for kernel, ins, outs, attrs, _ in self.steps:
                kernel([buffers[i] for i in ins], [buffers[o] for o in outs], attrs)
        # Copies: the arena is overwritten by the next call.
        return [np.array(buffers[v.id]) for v in self.graph.outputs]


def _aligned_bytes(nbytes: int) -> np.ndarray:
    """A byte array of at least `nbytes` whose start is ALIGN-aligned."""
    raw = np.empty(nbytes + ALIGN, np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    return raw[start:start + nbytes]
