"""Runs a graph's nodes as cpu kernels over buffers allocated once, at compile time."""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.backends.cpu.registry import KernelFn, get_kernel
from graphcnn.ir.graph import Graph


class CpuRunner:
    name = "cpu"

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.buffers: dict[int, np.ndarray] = {}
        self.steps: list[tuple[KernelFn, list[int], list[int], dict[str, Any], str]] = []
        for node in graph.nodes:
            if node.op in ("input", "param"):
                continue
            if node.op == "constant":
                self.buffers[node.output.id] = np.require(node.attrs["value"], requirements="C")
                continue
            for value in node.outputs:
                self.buffers[value.id] = np.empty(value.shape, dtype=value.dtype)
            self.steps.append((get_kernel(node.op), [v.id for v in node.inputs],
                               [v.id for v in node.outputs], node.attrs, node.op))

    @property
    def allocated_bytes(self) -> int:
        return sum(b.nbytes for b in self.buffers.values())

    def run(self, feeds: dict[int, np.ndarray]) -> list[np.ndarray]:
        """feeds: value id -> array for every input and param; returns the outputs."""
        buffers = self.buffers
        for vid, array in feeds.items():
            buffers[vid] = np.require(array, requirements="C")
        for kernel, ins, outs, attrs, _ in self.steps:
            kernel([buffers[i] for i in ins], [buffers[o] for o in outs], attrs)
        # Copies: the buffers are overwritten by the next call.
        return [np.array(buffers[v.id]) for v in self.graph.outputs]
