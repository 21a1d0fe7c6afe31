"""The graph walk every backend's runner shares.

A runner turns a graph into a list of `Step`s once, when it is built, and replays them at
every call. The walk is the same on every backend: inputs and parameters are fed per call
(`bind_source`), constants become buffers once (`constant`), every other node's outputs
get their buffers (`place`: views into the memory plan's arena), and every node that is
not a view of the plan (a reshape over its own input's bytes) becomes a step with the
backend's kernel (`build_kernel`). A call is `feed` (the inputs and parameters), `launch`
(the steps, in order), `collect` (the outputs); each backend fills in those hooks.

A runner may be called from many threads at once (an executable serving a thread pool).
What a call writes lives in a `CallContext`: its buffers (views of its own arena; the
constants are shared, read only) and its backend's scratch. Contexts are pooled (as ONNX
Runtime's per-run allocations): a call takes a free one, or makes one if every context is
in use, and gives it back when it ends. The first is made with the runner, so one thread
calling it costs what it did before; N threads at once hold at most N contexts.
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


@dataclass(slots=True)
class CallContext:
    """What one call at a time writes: `buffers` (value id -> array: the shared constants,
    the values placed in `arena`, and the feeds of its current call) and the backend's
    `scratch` (the cpu kernels' Workspace)."""

    buffers: dict[int, Any]
    arena: Any = None
    scratch: Any = None


class Runner:
    """Walks `graph` into `steps` over `buffers` (value id -> array). With a memory plan,
    intermediates live in its arena and the nodes it marks as views run nothing; the
    reference backend runs without one (every node runs, each call makes new arrays).
    `buffers` are the first call context's (see the module's docstring)."""

    name = ""
    # The largest batch a dynamic-batch runner runs, any batch from 1 up to it
    # (graphcnn/runtime/dynamic_batch.py); None: its graph's own batch only.
    max_batch: int | None = None
    # The smallest batch its graph runs at: 1, or 2 for a training graph whose batch norm
    # needs more than one value per channel (a (N, C) input); a call at 1 is then refused
    # in one line, as building the graph at 1 would be.
    smallest_batch: int = 1

    def __init__(self, graph: Graph, plan: MemoryPlan | None) -> None:
        self.graph = graph
        self.plan = plan
        self.buffers: dict[int, Any] = {}
        self.steps: list[Step] = []
        self._constants: dict[int, Any] = {}
        self._placed: list[Value] = []        # the values a context's arena holds
        arena = self.new_arena()
        views = plan.views if plan is not None else set()
        for node in graph.nodes:
            if node.op in FED_OPS:
                self.bind_source(node)
                continue
            if node.op == "constant":
                buffer = self.constant(node.output, node.attrs["value"])
                self.buffers[node.output.id] = self._constants[node.output.id] = buffer
                continue
            for value in node.outputs:
                buffer = self.place(value, arena)
                if buffer is not None:
                    self.buffers[value.id] = buffer
                    self._placed.append(value)
            if node.id in views:
                continue  # a reshape over its own input's memory: nothing to run
            self.steps.append(Step(self.build_kernel(node), [v.id for v in node.inputs],
                                   [v.id for v in node.outputs], node.attrs, node.op,
                                   node.id))
        first = CallContext(self.buffers, arena, self.new_scratch())
        self._contexts = [first]   # every context made; _free: those no call holds now
        self._free = [first]

    # ---- call contexts ----------------------------------------------------------------
    @property
    def contexts(self) -> int:
        """How many call contexts exist: the most calls that have run at once (>= 1)."""
        return len(self._contexts)

    def take_context(self) -> CallContext:
        """A context no other call holds: the one given back last (one thread calling
        always gets the first), or a new one when every context is in use. (The pool's
        lists need no lock: append and pop are each atomic, one C call under the GIL.)"""
        try:
            return self._free.pop()
        except IndexError:
            context = self.new_context()
            self._contexts.append(context)
            return context

    def give_back(self, context: CallContext) -> None:
        """The call holding `context` is done with it."""
        self._free.append(context)

    def new_context(self) -> CallContext:
        """A context of its own for one more concurrent call: a new arena, the planned
        values as views of it, the constants shared."""
        arena = self.new_arena()
        buffers = dict(self._constants)
        for value in self._placed:
            buffers[value.id] = self.place(value, arena)
        return CallContext(buffers, arena, self.new_scratch())

    def implementations(self) -> list[tuple[int, str, str, str]]:
        """(node id, op, implementation name, why) of each step, in step order."""
        return [(s.node, s.op, s.implementation, s.why) for s in self.steps]

    @property
    def allocated_bytes(self) -> int:
        """The bytes of intermediates each call context holds: the plan's arena."""
        return self.plan.arena_bytes if self.plan is not None else 0

    @property
    def packed_bytes(self) -> int:
        """The bytes of the frozen weights the steps hold transformed for their kernels."""
        return sum(s.packed_bytes for s in self.steps)

    @property
    def workspace_bytes(self) -> int:
        """The scratch a call takes beyond the arena and leaves in its context, sized by
        the backend (0: none)."""
        return 0

    @property
    def held_scratch_bytes(self) -> int:
        """The scratch bytes every context holds now, together (0: the backend has
        none)."""
        return 0

    # ---- the backend's hooks: building ------------------------------------------------
    def bind_source(self, node: Node) -> None:
        """An input or param node: nothing to hold until a call feeds it (by default)."""

    def constant(self, value: Value, array: Any) -> Any:
        """The buffer of a constant, made once."""
        return array

    def new_arena(self) -> Any:
        """The bytes of one context's planned values (None: the backend has no arena)."""
        return None

    def new_scratch(self) -> Any:
        """One context's scratch for its kernels (None: the backend needs none)."""
        return None

    def place(self, value: Value, arena: Any) -> Any:
        """The buffer of a node's output in `arena` (None: made at each call)."""
        return None

    def build_kernel(self, node: Node) -> Any:
        """What runs `node` (after its outputs are placed)."""
        raise NotImplementedError

    # ---- the backend's hooks: calling -------------------------------------------------
    def feed(self, context: CallContext, feeds: dict[int, Any]) -> dict[int, Any]:
        """The buffers of this call (the context's) with `feeds` (value id -> array) in
        them."""
        raise NotImplementedError

    def launch(self, context: CallContext, buffers: dict[int, Any]) -> None:
        """Run every step, in order, over `buffers` (with the context's scratch)."""
        raise NotImplementedError

    def collect(self, buffers: dict[int, Any]) -> list[Any]:
        """The graph's outputs, as the caller may keep them (nothing of the context's:
        the next call that takes it overwrites it)."""
        raise NotImplementedError

    def run_at(self, feeds: dict[int, Any], batch: int) -> list[Any]:
        """`run` at `batch`: a dynamic-batch runner's; the others run their graph's."""
        return self.run(feeds)

    def run(self, feeds: dict[int, Any]) -> list[Any]:
        """feeds: value id -> array for every input and param; returns the outputs. Any
        number of threads may call it at once."""
        context = self.take_context()
        try:
            buffers = self.feed(context, feeds)
            self.launch(context, buffers)
            return self.collect(buffers)
        finally:
            self.give_back(context)
