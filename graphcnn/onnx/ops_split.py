"""Slice, Split and Gather on tensors computed at run time (the folders of ops_shape.py
handle them on shape computations): `slice` ops along any axis but the batch, which they
keep whole (what gc.split exports, and torch's exporters write for torch.split / chunk).
A Slice with steps other than 1 and a Gather with constant indices pick the indices one
run at a time: each run of consecutive indices is one `slice`, the runs are concatenated
(and a Gather's output reshaped to the indices' shape)."""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.onnx.context import PROBES, ImportContext, Runtime
from graphcnn.onnx.importers import Values, importer
from graphcnn.onnx.reader import OnnxNode


def _slice_axis(ctx: ImportContext, x: Runtime, axis: int, start: int, end: int
                ) -> tuple[int, int]:
    """ONNX's clamping of one axis's [start, end) (negative counts from the end), as a
    range of the per-sample shape; the batch axis only whole."""
    sizes = [x.shape_at(p)[axis] for p in PROBES]
    ranges = []
    for size in sizes:
        s = start + size if start < 0 else start
        e = end + size if end < 0 else end
        ranges.append((min(max(s, 0), size), min(max(e, 0), size)))
    if axis == x.batch_axis:
        if any(r != (0, size) for r, size in zip(ranges, sizes)):
            raise ctx.error(f"a slice of the batch axis {axis} ({start}:{end}) is not "
                            f"supported; graphcnn slices the batch whole")
        return 0, x.tensor.type.shape[axis]
    s, e = ranges[0]
    return s, max(s, e)


def _record_slice(ctx: ImportContext, x: Runtime, box: dict[int, tuple[int, int]]) -> Runtime:
    shape = x.tensor.type.shape
    starts = tuple(box.get(a, (0, d))[0] for a, d in enumerate(shape))
    ends = tuple(box.get(a, (0, d))[1] for a, d in enumerate(shape))
    return Runtime(ctx.apply("slice", [x.tensor], starts=starts, ends=ends), x.batch_axis)


def _axis(ctx: ImportContext, axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ctx.error(f"axis {axis} is out of range for a {ndim}-D tensor")
    return axis % ndim


def take(ctx: ImportContext, x: Runtime, axis: int, indices: list[int]) -> Runtime:
    """x's entries at `indices` (in range, any order, repeats allowed) along `axis`."""
    if axis == x.batch_axis:
        raise ctx.error(f"picking entries of the batch axis {axis} is not supported; "
                        f"graphcnn keeps the batch whole")
    if not indices:
        raise ctx.error("the selection along axis {axis} is empty")
    runs: list[tuple[int, int]] = []
    for i in indices:
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    parts = [_record_slice(ctx, x, {axis: run}) for run in runs]
    if len(parts) == 1:
        return parts[0]
    return Runtime(ctx.apply("concat", [p.tensor for p in parts], axis=axis), x.batch_axis)


def _stepped_indices(size: int, start: int, end: int, step: int) -> list[int]:
    """ONNX Slice's indices along one axis of `size` for a step other than 1."""
    if step > 0:
        s = min(max(start + size if start < 0 else start, 0), size)
        e = min(max(end + size if end < 0 else end, 0), size)
    else:
        s = min(max(start + size if start < 0 else start, 0), size - 1)
        e = min(max(end + size if end < 0 else end, -1), size - 1)
    return list(range(s, e, step))


@importer("Gather", limits="constant indices; not along a dynamic batch axis")
def gather_node(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    x = ctx.runtime(ins[0], "data")
    axis = _axis(ctx, int(node.attrs.get("axis", 0)), x.ndim)
    index_array = np.asarray(ctx.static(ins[1], "indices"))
    if index_array.dtype.kind not in "iu":
        raise ctx.error(f"indices have dtype {index_array.dtype}, not an integer type")
    size = x.tensor.type.shape[axis]
    flat = [int(i) for i in index_array.reshape(-1)]
    if any(not -size <= i < size for i in flat):
        raise ctx.error(f"indices {flat} are out of range for axis {axis} of size {size}")
    picked = take(ctx, x, axis, [i % size for i in flat])
    return [ctx.reshape_to(picked, [s[:axis] + index_array.shape + s[axis + 1:]
                                    for s in (x.shape_at(p) for p in PROBES)])]


@importer("Slice", limits="constant starts, ends, axes, steps; from opset 10")
def slice_node(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    x = ctx.runtime(ins[0], "data")
    if node.opset < 10:
        raise ctx.error("Slice before opset 10 (starts and ends as attributes) is not "
                        "supported on tensors")
    starts, ends = ctx.ints(ins[1], "starts"), ctx.ints(ins[2], "ends")
    axes = ctx.ints(ins[3], "axes") if len(ins) > 3 and ins[3] is not None \
        else list(range(len(starts)))
    steps = ctx.ints(ins[4], "steps") if len(ins) > 4 and ins[4] is not None \
        else [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ctx.error(f"starts {starts}, ends {ends}, axes {axes} and steps {steps} must "
                        f"have the same length")
    if 0 in steps:
        raise ctx.error(f"steps {steps} hold a 0")
    box, stepped = {}, {}
    for axis, s, e, step in zip(axes, starts, ends, steps):
        a = _axis(ctx, axis, x.ndim)
        if step == 1:
            box[a] = _slice_axis(ctx, x, a, s, e)
        else:
            stepped[a] = _stepped_indices(x.tensor.type.shape[a], s, e, step)
    y = _record_slice(ctx, x, box) if box else x
    for a, indices in stepped.items():
        y = take(ctx, y, a, indices)
    return [y]


@importer("Split", limits="not along a dynamic batch axis")
def split_node(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    x = ctx.runtime(ins[0], "input")
    axis = _axis(ctx, int(node.attrs.get("axis", 0)), x.ndim)
    if axis == x.batch_axis:
        raise ctx.error(f"a Split of the batch axis {axis} is not supported")
    size = x.tensor.type.shape[axis]
    if node.opset < 13:
        sizes = [int(v) for v in node.attrs.get("split", [])]
    else:
        sizes = ctx.ints(ins[1], "split") if len(ins) > 1 and ins[1] is not None else []
    count = len(node.outputs)
    if not sizes:
        # equal parts; from opset 18 num_outputs parts of ceil(size / n), the last smaller
        n = int(node.attrs.get("num_outputs", count))
        part = -(-size // n)
        sizes = [min(part, size - i * part) for i in range(n)]
    if sum(sizes) != size or len(sizes) != count or min(sizes) < 0:
        raise ctx.error(f"split sizes {sizes} do not divide axis {axis} of size {size} into "
                        f"{count} outputs")
    outs, offset = [], 0
    for n in sizes:
        outs.append(_record_slice(ctx, x, {axis: (offset, offset + n)}))
        offset += n
    return outs
