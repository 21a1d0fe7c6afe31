"""Runs a graph's nodes as cpu kernels over buffers allocated ahead of the calls: views into
an arena laid out by the memory plan (graphcnn/runtime/memory_plan.py), one arena and one
workspace per call context (graphcnn/runtime/runner.py: one, unless threads call at
once). Which implementation runs each node is chosen once, here, when the runner is built
(graphcnn/backends/cpu/strategy.py), and recorded in its step, with the frozen weights it
prepacked (held by the step's kernel, so by this runner, and shared by every call)."""
from __future__ import annotations

from typing import Any

import numba
import numpy as np

from graphcnn.backends.cpu import threads
from graphcnn.backends.cpu.aligned import aligned_bytes
from graphcnn.backends.cpu.blas import one_thread_pool
from graphcnn.backends.cpu.kernels.conv_gemm import Workspace, begin_call, use_workspace
from graphcnn.backends.cpu.registry import KernelFn, launch_mode, recording
from graphcnn.backends.cpu.strategy import Implementation, implementation
from graphcnn.ir.graph import Graph, Node, Value
from graphcnn.runtime.memory_plan import MemoryPlan, plan_memory
from graphcnn.runtime.runner import CallContext, Runner, Step


class CpuRunner(Runner):
    """A step's kernel is its node's chosen Implementation's `run`, called as
    kernel(ins, outs, attrs) on the arrays of its input and output values."""

    name = "cpu"
    plan: MemoryPlan

    def __init__(self, graph: Graph, plan: MemoryPlan | None = None,
                 implementations: dict[int, str] | None = None) -> None:
        """`implementations`: node id -> the implementation name to run it with (an
        artifact's), instead of choosing again."""
        self.launch_table: Any = None  # precompiled kernels (an artifact's), see aot.py
        self._saved = implementations or {}
        self.chosen: dict[int, Implementation] = {}  # node id -> its Implementation
        self._constants_made: dict[int, np.ndarray] = {}
        if plan is None:
            plan = self._plan_after_choosing(graph)
        super().__init__(graph, plan)
        for step in self.steps:
            chosen = self.chosen[step.node]
            step.implementation, step.why = chosen.name, chosen.why
            step.packed_bytes = chosen.packed_bytes
            step.workspace_bytes = chosen.workspace_bytes

    @property
    def workspace_bytes(self) -> int:
        """The scratch a call leaves in its context's Workspace (conv_gemm.workspace: laid
        out afresh for each step, grown to the largest step's): the largest step's
        workspace."""
        return max((s.workspace_bytes for s in self.steps), default=0)

    @property
    def held_scratch_bytes(self) -> int:
        return sum(context.scratch.nbytes for context in self._contexts)

    def new_arena(self) -> np.ndarray:
        return aligned_bytes(self.plan.arena_bytes)

    def new_scratch(self) -> Workspace:
        return Workspace()   # empty: the first call grows it

    def _plan_after_choosing(self, graph: Graph) -> MemoryPlan:
        """The memory plan, made once the fused nodes' implementations are chosen: where
        the chosen kernel allows it, a group's output is placed over its residual
        (Implementation.side_in_place; memory_plan's over_side)."""
        for node in graph.nodes:
            if node.op == "constant":
                self._constants_made[node.output.id] = np.require(node.attrs["value"],
                                                                  requirements="C")
        for node in graph.nodes:
            if node.op == "fused":
                self.chosen[node.id] = implementation(node, self._constants_made,
                                                      self._saved.get(node.id))

        def over_side(node: Node) -> int | None:
            chosen = self.chosen.get(node.id)
            return None if chosen is None else chosen.side_in_place
        return plan_memory(graph, over_side=over_side)

    def constant(self, value: Value, array: Any) -> np.ndarray:
        made = self._constants_made.get(value.id)
        return made if made is not None else np.require(array, requirements="C")

    def place(self, value: Value, arena: np.ndarray) -> np.ndarray:
        offset = self.plan.offsets[value.id]
        nbytes = int(np.prod(value.shape, dtype=np.int64)) * np.dtype(value.dtype).itemsize
        return arena[offset:offset + nbytes].view(value.dtype).reshape(value.shape)

    def build_kernel(self, node: Node) -> KernelFn:
        # The node's constants are in self.buffers already (they come first in the graph).
        chosen = self.chosen.get(node.id)   # a fused node's: chosen before the plan
        if chosen is None:
            chosen = self.chosen[node.id] = implementation(node, self.buffers,
                                                           self._saved.get(node.id))
        return chosen.run

    def feed(self, context: CallContext, feeds: dict[int, np.ndarray]
             ) -> dict[int, np.ndarray]:
        buffers = context.buffers
        for vid, array in feeds.items():
            buffers[vid] = np.require(array, requirements="C")
        return buffers

    def launch(self, context: CallContext, buffers: dict[int, np.ndarray],
               steps: list[Step] | None = None,
               chosen: dict[int, Implementation] | None = None) -> None:
        """Run `steps` (default: this runner's), whose implementations are `chosen`'s."""
        steps = self.steps if steps is None else steps
        chosen = self.chosen if chosen is None else chosen
        # On a threading layer that is not thread-safe, one call at a time (threads.py).
        if threads.thread_safe():
            self._launch(context, buffers, steps, chosen)
        else:
            with threads.call_lock():
                self._launch(context, buffers, steps, chosen)

    def _launch(self, context: CallContext, buffers: dict[int, np.ndarray],
                steps: list[Step], chosen: dict[int, Implementation]) -> None:
        # One thread pool (Numba's) for every kernel, GEMMs included: see blas.py.
        with one_thread_pool(), launch_mode(table=self.launch_table):
            if recording():  # the frozen weights were prepacked at build: their kernels too
                for implementation in chosen.values():
                    if implementation.prepack is not None:
                        implementation.prepack()
            previous = use_workspace(context.scratch)
            threads.enter()
            total = mine = threads.thread_count()   # this Python thread's setting
            running, seen = threads.RUNNING, 1
            try:
                for step in steps:
                    # The calls running now share the cores (threads.py): re-read before
                    # each kernel, as another call may have started or ended since.
                    if len(running) != seen:
                        seen = len(running)
                        want = threads.share(total)
                        if want != mine:
                            numba.set_num_threads(want)
                            mine = want
                    begin_call()
                    step.kernel([buffers[i] for i in step.inputs],
                                [buffers[o] for o in step.outputs], step.attrs)
            finally:
                threads.leave()
                use_workspace(previous)
                if mine != total:
                    numba.set_num_threads(total)

    def collect(self, buffers: dict[int, np.ndarray]) -> list[np.ndarray]:
        # Copies: the arena is overwritten by the next call that takes this context.
        return [np.array(buffers[v.id]) for v in self.graph.outputs]
