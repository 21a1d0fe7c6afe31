"""The memory plan in an artifact: written as JSON, and read back checked against the
graph's own liveness (graphcnn.runtime.memory_plan.liveness), so that a tampered plan
cannot make two live tensors share bytes or a kernel write outside the arena."""
from __future__ import annotations

from typing import Any

from graphcnn.ir.graph import Graph
from graphcnn.ir.serialize import resolve_ref, value_ref
from graphcnn.runtime.artifact.format import field, integer
from graphcnn.runtime.memory_plan import (
    ALIGN,
    SLICED_OPS,
    VIEW_OPS,
    Buffer,
    MemoryPlan,
    concat_slices,
    liveness,
)


def plan_to_json(graph: Graph, plan: MemoryPlan) -> dict[str, Any]:
    values = {v.id: v for v in graph.values()}
    return {"arena_bytes": int(plan.arena_bytes),
            "buffers": [{"values": [value_ref(values[v.id]) for v in b.values],
                         "inner": [int(b.inner.get(v.id, 0)) for v in b.values],
                         "offset": int(b.offset), "size": int(b.size),
                         "first": int(b.first), "last": int(b.last)} for b in plan.buffers],
            "views": sorted(int(n) for n in plan.views)}


def plan_from_json(graph: Graph, data: Any) -> MemoryPlan:
    """The stored memory plan, checked: every tensor the kernels write has a buffer large
    enough, inside the arena, aligned; buffers whose lifetimes overlap do not share bytes;
    views are reshapes over their input's bytes or concats over their inputs' slices. A
    ValueError says what is wrong."""
    arena = integer(data, "arena_bytes", "memory_plan")
    live_range = liveness(graph)
    first, last = live_range.first, live_range.last
    buffers, offsets = [], {}
    for i, b in enumerate(field(data, "buffers", list, "memory_plan")):
        where = f"memory_plan.buffers[{i}]"
        values = [resolve_ref(graph, r) for r in field(b, "values", list, where)]
        # where each value starts in the buffer (a concat's inputs: their slices of it);
        # plans written before concatenation in place have none: all start at 0
        starts = b.get("inner", [0] * len(values)) if isinstance(b, dict) else None
        if not isinstance(starts, list) or len(starts) != len(values) or not all(
                isinstance(k, int) and not isinstance(k, bool) and k >= 0 and k % ALIGN == 0
                for k in starts):
            raise ValueError(f"{where}.inner must list an aligned start per value")
        offset, size = integer(b, "offset", where), integer(b, "size", where)
        lo, hi = integer(b, "first", where), integer(b, "last", where)
        if not values or offset % ALIGN or offset + size > arena:
            raise ValueError(f"{where} is empty, misaligned or outside the arena")
        for v, start in zip(values, starts):
            if v.id not in first or v.id in offsets:
                raise ValueError(f"{where}: value {value_ref(v)} is not a kernel output, or "
                                 f"is placed twice")
            if start + v.type.nbytes > size or lo > first[v.id] or hi < last[v.id]:
                raise ValueError(f"{where}: too small or too short-lived for {value_ref(v)}")
            offsets[v.id] = offset + start
        end = max(start + v.type.nbytes for v, start in zip(values, starts))
        if size > -(-end // ALIGN) * ALIGN:  # as the planner sizes
            raise ValueError(f"{where} is larger than the tensors it holds")
        buffers.append(Buffer(values, size, lo, hi, offset,
                              {v.id: k for v, k in zip(values, starts) if k}))
    if arena > sum(b.size for b in buffers):   # what a runner allocates: no more than used
        raise ValueError("memory_plan.arena_bytes is larger than its buffers need")
    unplaced = sorted(set(first) - set(offsets))
    if unplaced:
        raise ValueError(f"memory_plan places no buffer for {len(unplaced)} tensor(s)")
    ordered = sorted(buffers, key=lambda b: b.offset)
    for k, a in enumerate(ordered):
        for b in ordered[k + 1:]:
            if b.offset >= a.offset + a.size:
                break
            if a.overlaps_in_time(b):
                raise ValueError("memory_plan puts tensors that are live at the same time in "
                                 "the same bytes")
    views = set()
    for node_id in field(data, "views", list, "memory_plan"):
        if not isinstance(node_id, int) or not 0 <= node_id < len(graph.nodes):
            raise ValueError(f"memory_plan.views: bad node {node_id!r}")
        node = graph.nodes[node_id]
        if not _is_view(node, offsets):
            raise ValueError(f"memory_plan.views: node {node_id} is not a view of its input")
        views.add(node_id)
    return MemoryPlan(buffers, offsets, arena, views)


def _is_view(node: Any, offsets: dict[int, int]) -> bool:
    """A node the runner may skip: a reshape over its input's bytes, or a concat whose
    inputs were each placed in their slice of its output."""
    out = offsets.get(node.output.id)
    if node.op in VIEW_OPS:
        return out is not None and out == offsets.get(node.inputs[0].id)
    if node.op in SLICED_OPS:
        starts = concat_slices(node)
        return out is not None and starts is not None and all(
            offsets.get(v.id) == out + start for v, start in zip(node.inputs, starts))
    return False
