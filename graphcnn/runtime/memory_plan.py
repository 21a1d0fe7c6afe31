"""Memory planning: every intermediate tensor gets an offset in one arena per Executable.

1. Liveness over the schedule (the graph's node order): a tensor lives from the step that
   makes it to the last step that reads it (graph outputs: to the end).
2. In place: an elementwise op (a scalar formula, or a fused group without an anchor) may
   write over an input that dies at that op and has its exact type; a reshape or flatten
   over its input, which makes it free (the runner skips it). Such tensors share a buffer
   whose lifetime is the union of theirs.
3. Offsets by TFLite's "greedy by size": buffers from the largest down, each at the lowest
   offset that does not overlap a placed buffer whose lifetime intersects its own.

A training graph is one graph (forward, loss, backward), so the activations the backward
pass does not read die early and their memory is reused; only the ones it reads stay.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from graphcnn.ir.graph import Graph, Node, Value
from graphcnn.ops.registry import get_op

ALIGN = 64  # bytes: a cache line, and the widest vector loads
VIEW_OPS = ("reshape", "flatten")


@dataclass
class Liveness:
    """When each tensor lives, over the schedule (the graph's compute nodes, in order)."""
    steps: list[Node]
    first: dict[int, int]   # value id -> the step that makes it (compute nodes' outputs only)
    last: dict[int, int]    # value id -> the last step that reads it; graph outputs: len(steps)


def liveness(graph: Graph) -> Liveness:
    """The one liveness of a graph: what the planner places by, what a stored plan is checked
    against (graphcnn/runtime/artifact/plan.py), and what the live-bytes floor sums."""
    steps = graph.compute_nodes()
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for step, node in enumerate(steps):
        for v in node.inputs:
            last[v.id] = step
        for v in node.outputs:
            first[v.id] = step
            last.setdefault(v.id, step)  # never read: still written by its kernel
    for v in graph.outputs:
        last[v.id] = len(steps)
    return Liveness(steps, first, last)


def live_bytes_lower_bound(graph: Graph) -> int:
    """The largest total size of tensors alive at once at any single op (the floor no
    memory plan can go under, with this schedule, unless ops write in place)."""
    live_range = liveness(graph)
    best = 0
    live: dict[int, int] = {}
    for step, node in enumerate(live_range.steps):
        for v in node.outputs:
            live[v.id] = v.type.nbytes
        best = max(best, sum(live.values()))
        for vid in [k for k in live if live_range.last[k] <= step]:
            del live[vid]
    return best


@dataclass
class Buffer:
    values: list[Value]
    size: int
    first: int
    last: int
    offset: int = -1

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass
class MemoryPlan:
    buffers: list[Buffer]
    offsets: dict[int, int] = field(default_factory=dict)   # value id -> byte offset
    arena_bytes: int = 0
    views: set[int] = field(default_factory=set)  # node ids whose output is their input

    def describe(self) -> list[tuple[str, int, int, int, int]]:
        """(values, offset, size, first step, last step) per buffer, by offset."""
        rows = []
        for b in sorted(self.buffers, key=lambda b: (b.offset, b.first)):
            names = ",".join(f"%{v.id}" for v in b.values)
            rows.append((names, b.offset, b.size, b.first, b.last))
        return rows


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _can_write_over(node: Node, value: Value) -> bool:
    out = node.outputs[0]
    if node.op in VIEW_OPS:
        return out.type.nbytes == value.type.nbytes and out.dtype == value.dtype
    elementwise = get_op(node.op).scalar is not None or (
        node.op == "fused" and not node.attrs["anchor"])
    return elementwise and len(node.outputs) == 1 and out.type == value.type


def plan_memory(graph: Graph, in_place: bool = True) -> MemoryPlan:
    live_range = liveness(graph)
    steps, first, last = live_range.steps, live_range.first, live_range.last
    planned = set(first)

    # Union the in-place pairs; each set becomes one buffer.
    owner: dict[int, int] = {vid: vid for vid in planned}

    def root(vid: int) -> int:
        while owner[vid] != vid:
            owner[vid] = owner[owner[vid]]
            vid = owner[vid]
        return vid

    views: set[int] = set()
    if in_place:
        graph_outputs = {v.id for v in graph.outputs}
        for step, node in enumerate(steps):
            if len(node.outputs) != 1:
                continue
            for v in node.inputs:
                if v.id in planned and last[v.id] == step and v.id not in graph_outputs \
                        and _can_write_over(node, v):
                    owner[node.outputs[0].id] = root(v.id)
                    if node.op in VIEW_OPS:
                        views.add(node.id)
                    break

    groups: dict[int, list[Value]] = {}
    for node in steps:
        for v in node.outputs:
            groups.setdefault(root(v.id), []).append(v)
    buffers = [Buffer(vals, _aligned(max(v.type.nbytes for v in vals)),
                      min(first[v.id] for v in vals), max(last[v.id] for v in vals))
               for vals in groups.values()]

    placed: list[Buffer] = []
    arena = 0
    for buf in sorted(buffers, key=lambda b: (-b.size, b.first)):
        offset = 0
        for other in sorted((p for p in placed if p.overlaps_in_time(buf)),
                            key=lambda p: p.offset):
            if offset + buf.size <= other.offset:
                break  # fits in the gap before `other`
            offset = max(offset, other.offset + other.size)
        buf.offset = offset
        placed.append(buf)
        arena = max(arena, offset + buf.size)
    offsets = {v.id: b.offset for b in buffers for v in b.values}
    return MemoryPlan(buffers, offsets, arena, views)
