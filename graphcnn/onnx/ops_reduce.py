"""Importers of ReduceSum, ReduceMean, ReduceMax and ReduceMin over any axes but the batch
(a fixed-batch file whose reduction crosses axis 0 is read at its own batch size, see
loader.py). They are compositions of registered ops:

    max   the reduced axes moved last and flattened to one, max_pool2d over it:
          (M, R) -> (1, M, 1, R) -> max_pool2d kernel (1, R) -> (M,)
    mean  the same with avg_pool2d; the mean over H, W of N, C, H, W is global_avg_pool2d
    sum   the mean * count, or sum_to where no axis scales with the batch (sum_to's target
          is a fixed shape, so it would sum the batch at another batch size)
    min   -max(-x)
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.dsl import constant
from graphcnn.onnx.context import PROBES, ImportContext, Runtime
from graphcnn.onnx.importers import Values, importer
from graphcnn.onnx.reader import OnnxNode

# the opset from which each op reads its axes from input 1 instead of an attribute
_AXES_INPUT_SINCE = {"ReduceSum": 13, "ReduceMean": 18, "ReduceMax": 18, "ReduceMin": 18}


def _axes(ctx: ImportContext, node: OnnxNode, ins: Values, ndim: int) -> list[int] | None:
    """The reduced axes, sorted; None where the op is the identity (no axes given and
    noop_with_empty_axes=1)."""
    if node.opset < _AXES_INPUT_SINCE[node.op_type]:
        given = node.attrs.get("axes")
        axes = None if given is None else [int(a) for a in given]
    else:
        axes = ctx.ints(ins[1], "axes") if len(ins) > 1 and ins[1] is not None else None
    if not axes:
        if int(node.attrs.get("noop_with_empty_axes", 0)):
            return None
        return list(range(ndim))
    for a in axes:
        if not -ndim <= a < ndim:
            raise ctx.error(f"axis {a} is out of range for a {ndim}-D input")
    return sorted({a % ndim for a in axes})


def _neg(ctx: ImportContext, x: Runtime) -> Runtime:
    return Runtime(ctx.apply("mul", [x.tensor, constant(np.float32(-1.0))]), x.batch_axis)


def _pooled(ctx: ImportContext, x: Runtime, axes: list[int], pool: str) -> Runtime:
    """max_pool2d or avg_pool2d over `axes`, those axes kept at size 1."""
    ndim = x.ndim
    kept = [a for a in range(ndim) if a not in axes]
    perm = tuple(kept + axes)
    moved = x if perm == tuple(range(ndim)) else Runtime(
        ctx.apply("transpose", [x.tensor], perm=perm),
        None if x.batch_axis is None else perm.index(x.batch_axis))
    reduced = int(np.prod([x.tensor.type.shape[a] for a in axes]))
    shapes = [moved.shape_at(p) for p in PROBES]
    rows = ctx.reshape_to(moved, [(1, int(np.prod(s[:len(kept)])), 1, reduced)
                                  for s in shapes])
    pooled = Runtime(ctx.apply(pool, [rows.tensor], kernel_size=(1, reduced),
                               stride=(1, reduced)), rows.batch_axis)
    return ctx.reshape_to(pooled, [tuple(1 if a in axes else d for a, d in
                                         enumerate(x.shape_at(p))) for p in PROBES])


@importer("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin",
          limits="not over a dynamic batch axis; no empty tensors")
def reduce(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    x = ctx.runtime(ins[0], "data")
    axes = _axes(ctx, node, ins, x.ndim)
    if axes is None:
        return [x]
    if x.batch_axis is not None and x.batch_axis in axes:
        raise ctx.error(f"{node.op_type} over axes {axes} reduces the batch axis "
                        f"{x.batch_axis} (shape {x.shape_at(PROBES[0])} at batch "
                        f"{PROBES[0]}); graphcnn keeps the samples apart")
    shape = x.tensor.type.shape
    if x.ndim == 0 or any(shape[a] == 0 for a in axes):
        raise ctx.error(f"{node.op_type} of an empty tensor {shape} is not supported")
    op = node.op_type
    if op == "ReduceMean" and x.ndim == 4 and axes == [2, 3] and x.batch_axis in (0, None):
        y = Runtime(ctx.apply("global_avg_pool2d", [x.tensor]), x.batch_axis)
    elif op == "ReduceSum" and x.batch_axis is None:
        target = tuple(1 if a in axes else d for a, d in enumerate(shape))
        y = Runtime(ctx.apply("sum_to", [x.tensor], shape=target), None)
    elif op in ("ReduceSum", "ReduceMean"):
        y = _pooled(ctx, x, axes, "avg_pool2d")
        if op == "ReduceSum":
            count = int(np.prod([shape[a] for a in axes]))
            y = Runtime(ctx.apply("mul", [y.tensor, constant(np.float32(count))]),
                        y.batch_axis)
    elif op == "ReduceMax":
        y = _pooled(ctx, x, axes, "max_pool2d")
    else:
        y = _neg(ctx, _pooled(ctx, _neg(ctx, x), axes, "max_pool2d"))
    if not int(node.attrs.get("keepdims", 1)):
        y = ctx.reshape_to(y, [tuple(d for a, d in enumerate(y.shape_at(p)) if a not in axes)
                               for p in PROBES])
    return [y]
