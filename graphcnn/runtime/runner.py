"""The graph walk every backend's runner shares.

A runner turns a graph into a list of `Step`s once, when it is built, and replays them at
every call. The walk is the same on every backend: inputs and parameters are fed per call
(`bind_source`), constants become buffers once (`constant`), every other node's outputs
get their buffers (`place`: views into the memory plan's arena), and every node that is
not a view of the plan (a reshape over its own input's bytes) becomes a step with the
backend's kernel (`build_kernel`). A call is `feed` (the inputs and parameters), `launch`
(the steps, in order), `collect` (the outputs); each backend fills in those hooks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphcnn.ir.graph import Graph, Node, Value
from graphcnn.runtime.memory_plan import MemoryPlan

FED_OPS = ("input", "param")   # their values are fed at each call


@dataclass(slots=True)
class Step:
    """One node run as a kernel. kernel: what the backend runs (its runner says what that
    is); inputs, outputs: value ids; attrs, op, node: the node's (node: its id).
    implementation, why: which of the op's implementations runs and the rule that chose
    it, for backends that choose one (empty: not recorded). packed_bytes: the frozen
    weights its kernel holds transformed (prepacked when the runner was built);
    workspace_bytes: the scratch one run of it takes beyond its outputs."""

    kernel: Any
    inputs: list[int]
    outputs: list[int]
    attrs: dict[str, Any]
    op: str
    node: int
    implementation: str = ""
    why: str = ""
    packed_bytes: int = 0
    workspace_bytes: int = 0


class Runner:
    """Walks `graph` into `steps` over `buffers` (value id -> array). With a memory plan,
    intermediates live in its arena and the nodes it marks as views run nothing; the
    reference backend runs without one (every node runs, each call makes new arrays)."""

    name = ""

    def __init__(self, graph: Graph, plan: MemoryPlan | None) -> None:
        self.graph = graph
        self.plan = plan
        self.buffers: dict[int, Any] = {}
        self.steps: list[Step] = []
        views = plan.views if plan is not None else set()
        for node in graph.nodes:
            if node.op in FED_OPS:
                self.bind_source(node)
                continue
            if node.op == "constant":
                self.buffers[node.output.id] = self.constant(node.output, node.attrs["value"])
                continue
            for value in node.outputs:
                buffer = self.place(value)
                if buffer is not None:
                    self.buffers[value.id] = buffer
            if node.id in views:
                continue  # a reshape over its own input's memory: nothing to run
            self.steps.append(Step(self.build_kernel(node), [v.id for v in node.inputs],
                                   [v.id for v in node.outputs], node.attrs, node.op,
                                   node.id))

    def implementations(self) -> list[tuple[int, str, str, str]]:
        """(node id, op, implementation name, why) of each step, in step order."""
        return [(s.node, s.op, s.implementation, s.why) for s in self.steps]

    @property
    def allocated_bytes(self) -> int:
        """The bytes of intermediates allocated once, for every call: the plan's arena."""
        return self.plan.arena_bytes if self.plan is not None else 0

    @property
    def packed_bytes(self) -> int:
        """The bytes of the frozen weights the steps hold transformed for their kernels."""
        return sum(s.packed_bytes for s in self.steps)

    @property
    def workspace_bytes(self) -> int:
        """The scratch a call takes beyond the arena and leaves in its thread, sized by
        the backend (0: none)."""
        return 0

    # ---- the backend's hooks: building ------------------------------------------------
    def bind_source(self, node: Node) -> None:
        """An input or param node: nothing to hold until a call feeds it (by default)."""

    def constant(self, value: Value, array: Any) -> Any:
        """The buffer of a constant, made once."""
        return array

    def place(self, value: Value) -> Any:
        """The buffer of a node's output (None: made at each call)."""
        return None

    def build_kernel(self, node: Node) -> Any:
        """What runs `node` (after its outputs are placed)."""
        raise NotImplementedError

    # ---- the backend's hooks: calling -------------------------------------------------
    def feed(self, feeds: dict[int, Any]) -> dict[int, Any]:
        """The buffers of this call with `feeds` (value id -> array) in them."""
        raise NotImplementedError

    def launch(self, buffers: dict[int, Any]) -> None:
        """Run every step, in order, over `buffers`."""
        raise NotImplementedError

    def collect(self, buffers: dict[int, Any]) -> list[Any]:
        """The graph's outputs, as the caller may keep them."""
        raise NotImplementedError

    def run(self, feeds: dict[int, Any]) -> list[Any]:
        """feeds: value id -> array for every input and param; returns the outputs."""
        buffers = self.feed(feeds)
        self.launch(buffers)
        return self.collect(buffers)
