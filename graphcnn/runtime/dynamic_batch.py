"""One compiled graph for any batch size from 1 to a maximum.

An executable compiled with `batch_size=None` is optimized and planned once, at its maximum
batch. A call at a smaller batch `b` runs the same graph replayed at `b` (`rebatch`): every
node the same, in the same order, so every value keeps its id; only the batch axis of the
values that carry one shrinks. Since each such value leads with its batch axis and is
stored C-contiguous, its bytes at batch `b` are a prefix of its bytes at the maximum: the
memory plan made for the maximum holds every smaller batch at the same offsets, and no
call needs a new arena (graphcnn/backends/cpu/dynamic.py).

A model whose graph does not keep its batch axis leading everywhere (an ONNX graph written
for one fixed batch, a reshape that folds the batch into another axis) cannot be replayed
so: `rebatch` says which node breaks it, in one line.

A training graph (forward, loss, backward: ``value_and_grad(batch_size=None)``) is
replayed the same way; its parameter gradients and its loss have no batch axis and keep
their shapes. Replaying is only right if nothing in the graph was computed from the batch
size when it was built (a 1/B constant, a count in an attribute): `check_replays` makes
sure of it by comparing the replay with the graph built at another batch.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.errors import GraphBuildError
from graphcnn.ir.graph import Graph, Value

DEFAULT_MAX_BATCH = 64


class DynamicBatchError(ValueError):
    """The model cannot be compiled for any batch size: a node ties its values to one."""


def batch_major(value: Value) -> bool:
    """Whether `value` is an input that carries the batch (every model input does; the
    dropout seed, a scalar, does not)."""
    return value.node.op == "input" and len(value.shape) > 0


def max_batch_of(graph: Graph) -> int:
    """The batch a graph was built at: its first batch-carrying input's leading size."""
    for value in graph.inputs:
        if batch_major(value):
            return int(value.shape[0])
    raise DynamicBatchError(f"graph {graph.name!r} has no input with a batch axis")


def rebatch(graph: Graph, batch: int) -> Graph:
    """`graph` (built at its maximum batch B) replayed with every input at `batch`: the same
    nodes in the same order (so the same node and value ids), each value's shape either the
    same as at B or B replaced by `batch` in its leading axis. A DynamicBatchError names the
    first node for which neither holds."""
    full = max_batch_of(graph)
    out = Graph(graph.name)
    mapping: dict[int, Value] = {}
    for node in graph.nodes:
        attrs = dict(node.attrs)
        inputs = [mapping[v.id] for v in node.inputs]
        if node.op == "input" and batch_major(node.output):
            attrs["shape"] = (batch, *tuple(attrs["shape"])[1:])
        elif _leading_changed(node.inputs, inputs) and _fixes_batch(node, full):
            attrs["shape"] = (batch, *tuple(attrs["shape"])[1:])   # reshape to (B, ...)
        elif node.op == "slice" and _leading_changed(node.inputs, inputs) \
                and attrs["starts"][0] == 0 and attrs["ends"][0] == full:
            # the whole batch axis, as at B (a concat's VJP slices every axis)
            attrs["ends"] = (batch, *tuple(attrs["ends"])[1:])
        try:
            new = out.add_node(node.op, inputs, attrs, loc=node.loc)
        except GraphBuildError as err:
            raise DynamicBatchError(f"{_where(node)} cannot run at batch {batch}: {err}") \
                from None
        for old, fresh in zip(node.outputs, new.outputs):
            if not _same_or_rebatched(old.shape, fresh.shape, full, batch):
                raise DynamicBatchError(
                    f"{_where(node)} makes {old.type} at batch {full} but {fresh.type} at "
                    f"batch {batch}: its output does not lead with the batch axis, so the "
                    f"model compiles only for a fixed batch_size")
            mapping[old.id] = fresh
    out.set_outputs([mapping[v.id] for v in graph.outputs], graph.output_names)
    return out


def check_batch(batch: Any, max_batch: int, name: str) -> int:
    """`batch`, the leading size of input `name`, if 1 <= batch <= max_batch, else a
    ValueError that says what the executable takes."""
    if not 1 <= batch <= max_batch:
        raise ValueError(f"input {name!r} has batch {batch}; this executable runs batches of "
                         f"1 to {max_batch} (compile with a larger max_batch)")
    return int(batch)


def _leading_changed(before: list[Value], after: list[Value]) -> bool:
    return bool(before) and len(before[0].shape) > 0 and before[0].shape[:1] != after[0].shape[:1]


def _fixes_batch(node: Any, full: int) -> bool:
    """Whether the node's `shape` attribute (a reshape's target) spells the batch out as its
    first size. For the other ops with a target shape (sum_to, broadcast_to: aligned on
    the right) only a target of the input's rank keeps the batch axis first: sum_to
    (B, C) -> (C,) with C equal to B keeps its (C,) at every batch."""
    shape = node.attrs.get("shape")
    if not (isinstance(shape, tuple) and len(shape) > 0 and shape[0] == full):
        return False
    return node.op == "reshape" or len(shape) == len(node.inputs[0].shape)


def _same_or_rebatched(old: tuple[int, ...], new: tuple[int, ...], full: int,
                       batch: int) -> bool:
    if tuple(old) == tuple(new):
        return True
    return len(old) > 0 and old[0] == full and tuple(new) == (batch, *old[1:])


def _where(node: Any) -> str:
    loc = f" (at {node.loc})" if node.loc else ""
    return f"node {node.op} %{node.outputs[0].id if node.outputs else node.id}{loc}"


def check_replays(graph: Graph, built_at_probe: Graph, owner: str) -> None:
    """Check that `graph` (built at its maximum batch) replayed at the batch of
    `built_at_probe` (the same model built directly at another batch) is that graph:
    the same ops, attributes, constants and shapes, node by node. A graph that passes
    holds no number derived from the batch size (a 1/B baked into a constant, a count in
    an attribute), so replaying it at any batch computes what building it there would.
    A DynamicBatchError names the first node that differs."""
    probe = max_batch_of(built_at_probe)
    replayed = rebatch(graph, probe)
    if len(replayed.nodes) != len(built_at_probe.nodes):
        raise DynamicBatchError(f"{owner}: the graph of {graph.name!r} has "
                                f"{len(replayed.nodes)} nodes at batch {max_batch_of(graph)} "
                                f"but {len(built_at_probe.nodes)} at batch {probe}; it runs "
                                f"at one batch size only: give a batch_size")
    for mine, theirs in zip(replayed.nodes, built_at_probe.nodes):
        what = _difference(mine, theirs)
        if what is not None:
            raise DynamicBatchError(
                f"{owner}: {_where(mine)}: {what} depends on the batch size (built at batch "
                f"{probe} it differs from the batch-{max_batch_of(graph)} graph replayed "
                f"there), so it runs at one batch size only: give a batch_size")


def _difference(a: Any, b: Any) -> str | None:
    """What differs between two nodes in the same place of two graphs, or None."""
    if a.op != b.op:
        return f"the op ({b.op} when built at that batch)"
    if [v.type for v in a.outputs] != [v.type for v in b.outputs]:
        return (f"the output ({', '.join(str(v.type) for v in b.outputs)} when built at that "
                f"batch, {', '.join(str(v.type) for v in a.outputs)} replayed)")
    if sorted(a.attrs) != sorted(b.attrs):
        return "the attributes"
    for key, value in a.attrs.items():
        other = b.attrs[key]
        if isinstance(value, np.ndarray) or isinstance(other, np.ndarray):
            same = np.array_equal(np.asarray(value), np.asarray(other), equal_nan=True)
        else:
            same = bool(value == other)
        if not same:
            return f"attribute {key!r}" if a.op != "constant" else "the value"
    return None
