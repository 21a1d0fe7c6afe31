"""Memory planning: every intermediate tensor gets an offset in one arena per Executable.

1. Liveness over the schedule (the graph's node order): a tensor lives from the step that
   makes it to the last step that reads it (graph outputs: to the end).
2. In place: an elementwise op (a scalar formula, or a fused group without an anchor) may
   write over an input that dies at that op and has its exact type; a reshape or flatten
   over its input, which makes it free (the runner skips it); and, where the backend says
   its kernel allows it (`over_side`), a fused group over its epilogue's side input (a
   convolution whose tiles add the residual as they store it: ResNet's blocks), which then
   reads and writes one tensor instead of reading one and writing another. Such tensors
   share a buffer whose lifetime is the union of theirs.
3. Concatenation in place: where a concat's inputs are contiguous slices of its output
   (nothing but ones before its axis: batch 1 along channels), each input is made in its
   slice of the output's buffer, and the concat itself is free (the runner skips it).
   GoogLeNet's branches then write straight into the block's output, and a DenseNet
   block's growing concatenations all live in the last one's buffer: no copies.
4. Offsets by TFLite's "greedy by size": buffers from the largest down, each at the lowest
   offset that does not overlap a placed buffer whose lifetime intersects its own.

A training graph is one graph (forward, loss, backward), so the activations the backward
pass does not read die early and their memory is reused; only the ones it reads stay.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from graphcnn.ir.graph import Graph, Node, Value
from graphcnn.ops.registry import get_op

ALIGN = 64  # bytes: a cache line, and the widest vector loads
VIEW_OPS = ("reshape", "flatten")
SLICED_OPS = ("concat",)   # free when every input was made in its slice of the output


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
    inner: dict[int, int] = field(default_factory=dict)  # value id -> its bytes' start in
    #                                                      the buffer (absent: 0)

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass
class MemoryPlan:
    buffers: list[Buffer]
    offsets: dict[int, int] = field(default_factory=dict)   # value id -> byte offset
    arena_bytes: int = 0
    views: set[int] = field(default_factory=set)  # node ids the runner skips: reshapes
    #                                               over their input, concats over theirs

    def describe(self) -> list[tuple[str, int, int, int, int]]:
        """(values, offset, size, first step, last step) per buffer, by offset."""
        rows = []
        for b in sorted(self.buffers, key=lambda b: (b.offset, b.first)):
            names = ",".join(f"%{v.id}" + (f"@{b.inner[v.id]}" if b.inner.get(v.id) else "")
                             for v in b.values)
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


def concat_slices(node: Node) -> list[int] | None:
    """Where each input of a concat starts in its output, in bytes, when every input is a
    contiguous slice of the output (nothing but ones before the axis); else None."""
    out = node.outputs[0]
    axis = node.attrs["axis"] % len(out.shape)
    if axis == 0 or any(d != 1 for d in out.shape[:axis]):
        return None   # axis 0 is the batch: an any-batch executable's plan must not slice it
    starts, start = [], 0
    for v in node.inputs:
        starts.append(start)
        start += v.type.nbytes
    return starts


def plan_memory(graph: Graph, in_place: bool = True,
                over_side: Callable[[Node], int | None] | None = None) -> MemoryPlan:
    """The graph's memory plan (the module's docstring). `over_side(node)`: the input a
    fused node's kernel may write its output over (its epilogue's side, read at each
    element just before that element is stored), or None; the backend's answer, from the
    kernel it chose."""
    live_range = liveness(graph)
    steps, first, last = live_range.steps, live_range.first, live_range.last
    planned = set(first)

    # Union-find over values, with each value's byte offset from its parent: the in-place
    # pairs share bytes (offset 0), a concat's inputs sit at their slices of its output.
    owner: dict[int, int] = {vid: vid for vid in planned}
    shift: dict[int, int] = {vid: 0 for vid in planned}

    def root(vid: int) -> int:
        path = []
        while owner[vid] != vid:
            path.append(vid)
            vid = owner[vid]
        for child in reversed(path):   # compress: offsets become offsets from the root
            parent = owner[child]
            if parent != vid:
                shift[child] += shift[parent]
                owner[child] = vid
        return vid

    def place_at(vid: int, under: int, at: int) -> None:
        """Put vid's whole set in under's set, so that vid starts `at` bytes after under."""
        rv, ru = root(vid), root(under)
        owner[rv] = ru
        shift[rv] = shift[under] + at - shift[vid]

    views: set[int] = set()
    if in_place:
        graph_outputs = {v.id for v in graph.outputs}
        # A concat's output may become a view of other values' bytes (below): nothing
        # writes over it in place.
        concatenated = {n.outputs[0].id for n in steps if n.op in SLICED_OPS}
        for step, node in enumerate(steps):
            if len(node.outputs) != 1:
                continue
            side = over_side(node) if over_side is not None and node.op == "fused" else None
            for k, v in enumerate(node.inputs):
                if v.id in planned and last[v.id] == step and v.id not in graph_outputs \
                        and v.id not in concatenated and (_can_write_over(node, v) or (
                            k == side and v.type == node.outputs[0].type
                            and [u.id for u in node.inputs].count(v.id) == 1)):
                    place_at(node.outputs[0].id, v.id, 0)
                    if node.op in VIEW_OPS:
                        views.add(node.id)
                    break
        members: dict[int, list[Value]] = {}
        for node in steps:
            for v in node.outputs:
                members.setdefault(root(v.id), []).append(v)
        for step, node in enumerate(steps):
            starts = _slice_in_place(node, step, planned, last, root, shift, members) \
                if node.op in SLICED_OPS else None
            if starts is not None:
                out = node.outputs[0].id
                for v, start in zip(node.inputs, starts):
                    moved = members.pop(root(v.id))
                    place_at(v.id, out, start)
                    members[root(out)].extend(moved)
                views.add(node.id)
        # A DenseNet block concatenates all its features so far at each layer: once the
        # last concat holds them side by side, each earlier one is a view of a prefix.
        for node in steps:
            if node.op in SLICED_OPS and node.id not in views and _is_prefix(
                    node, planned, last, root, shift, members):
                out = node.outputs[0].id
                moved = members.pop(root(out))
                place_at(out, node.inputs[0].id, 0)
                members[root(out)].extend(moved)
                views.add(node.id)

    groups: dict[int, list[Value]] = {}
    for node in steps:
        for v in node.outputs:
            groups.setdefault(root(v.id), []).append(v)
    buffers = []
    for vals in groups.values():
        inner = {v.id: shift[v.id] for v in vals if shift[v.id]}
        size = _aligned(max(shift[v.id] + v.type.nbytes for v in vals))
        buffers.append(Buffer(vals, size, min(first[v.id] for v in vals),
                              max(last[v.id] for v in vals), inner=inner))

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
    offsets = {v.id: b.offset + b.inner.get(v.id, 0) for b in buffers for v in b.values}
    return MemoryPlan(buffers, offsets, arena, views)


def _slice_in_place(node: Node, step: int, planned: set[int], last: dict[int, int],
                    root: Callable[[int], int], shift: dict[int, int],
                    members: dict[int, list[Value]]
                    ) -> list[int] | None:
    """Where each input of this concat starts in its output, if every input can be made
    in its slice of the output (else None): each is
    a kernel's output read last by this concat (so nothing writes over it later, and no
    other concat takes it), distinct, on an aligned slice, and its in-place set lies
    within its own bytes (so the set fits in the slice)."""
    starts = concat_slices(node)
    out = node.outputs[0]
    if starts is None or out.id not in planned:
        return None
    roots = set()
    for v, start in zip(node.inputs, starts):
        if v.id not in planned or last[v.id] != step or start % ALIGN:
            return None
        r = root(v.id)
        if r in roots or r == root(out.id):
            return None
        roots.add(r)
        base = shift[v.id]
        for m in members[r]:
            root(m.id)   # compresses m's path: its shift becomes its offset from r
        if any(shift[m.id] < base or shift[m.id] + m.type.nbytes > base + v.type.nbytes
               for m in members[r]):
            return None
    return starts


def _is_prefix(node: Node, planned: set[int], last: dict[int, int],
               root: Callable[[int], int], shift: dict[int, int],
               members: dict[int, list[Value]]) -> bool:
    """Whether this concat's inputs already lie side by side, in its order, in one set's
    bytes, and outlive its output: then the output can be those bytes (nothing writes
    over them while it lives), if nothing else shares the output's own."""
    starts = concat_slices(node)
    out = node.outputs[0]
    if starts is None or out.id not in planned or members[root(out.id)] != [out]:
        return False
    if len({v.id for v in node.inputs}) != len(node.inputs) or any(
            v.id not in planned or last[v.id] <= last[out.id] for v in node.inputs):
        return False
    r = root(node.inputs[0].id)
    base = shift[node.inputs[0].id]
    return base % ALIGN == 0 and r != root(out.id) and all(
        root(v.id) == r and shift[v.id] == base + start
        for v, start in zip(node.inputs, starts))
