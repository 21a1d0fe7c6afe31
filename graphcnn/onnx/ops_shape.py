"""Importers of the data-movement ops (Reshape, Flatten, Transpose, Squeeze, Unsqueeze,
Concat, Pad; Resize is in ops_resize.py), of Constant and Shape, and the NumPy folders of the shape
computations exporters emit (Shape -> Gather -> Unsqueeze -> Concat -> Reshape, Slice,
ConstantOfShape)."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from graphcnn.nn.rearrange import pad_modes
from graphcnn.onnx.context import PROBES, Folded, ImportContext, Runtime, fold
from graphcnn.onnx.importers import FoldedValues, Values, folder, importer
from graphcnn.onnx.reader import OnnxNode
from graphcnn.ops.pad_modes import MODES, mode_pad_problem


def _axis(ctx: ImportContext, axis: int, ndim: int, what: str = "axis") -> int:
    if not -ndim <= axis < ndim:
        raise ctx.error(f"{what} {axis} is out of range for a {ndim}-D tensor")
    return axis % ndim


def _axes_input(ctx: ImportContext, node: OnnxNode, ins: Values, index: int,
                since: int) -> list[int] | None:
    """Axes from an attribute (before opset `since`) or from input `index` (from it on)."""
    if node.opset < since:
        axes = node.attrs.get("axes")
        return None if axes is None else [int(a) for a in axes]
    if len(ins) > index and ins[index] is not None:
        return ctx.ints(ins[index], "axes")
    return None


def _shapes(value: Runtime | Folded) -> list[tuple[int, ...]]:
    return [tuple(value.shape_at(p)) for p in PROBES]


# ---- Reshape / Flatten / Squeeze / Unsqueeze ------------------------------------------------

def resolve_reshape(ctx: ImportContext, in_shape: Sequence[int], spec: Sequence[int],
                    allowzero: bool) -> tuple[int, ...]:
    """ONNX Reshape: 0 copies the input's size at that position (unless allowzero), one
    -1 is inferred."""
    out = []
    for i, d in enumerate(spec):
        if d == 0 and not allowzero:
            if i >= len(in_shape):
                raise ctx.error(f"shape {list(spec)}: 0 at position {i} copies an input "
                                f"dimension the {len(in_shape)}-D input does not have")
            d = in_shape[i]
        elif d < -1:
            raise ctx.error(f"shape {list(spec)} has a negative size other than -1")
        out.append(int(d))
    total = int(np.prod(in_shape))
    if out.count(-1) > 1:
        raise ctx.error(f"shape {list(spec)} has more than one -1")
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1]))
        if known == 0 or total % known:
            raise ctx.error(f"cannot reshape {tuple(in_shape)} to {list(spec)}")
        out[out.index(-1)] = total // known
    if int(np.prod(out)) != total:
        raise ctx.error(f"cannot reshape {tuple(in_shape)} ({total} elements) to "
                        f"{list(spec)}")
    return tuple(out)


def _reshape_targets(ctx: ImportContext, x: Runtime | Folded, shape: Folded,
                     allowzero: bool) -> list[tuple[int, ...]]:
    specs = [[int(v) for v in np.asarray(a).reshape(-1)] for a in shape.values]
    # A file with a fixed batch size B may spell the batch as B in a constant target
    # (torch folds x.view(x.size(0), -1) to [B, -1]): read it as "the batch".
    if isinstance(x, Runtime) and x.batch_axis == 0 and x.tensor.type.shape[0] == 1 and \
            shape.is_static and len(ctx.fixed_batch) == 1 and specs[0] and \
            specs[0][0] == next(iter(ctx.fixed_batch)) and not allowzero:
        specs = [[0] + s[1:] for s in specs]
    return [resolve_reshape(ctx, in_shape, spec, allowzero)
            for in_shape, spec in zip(_shapes(x), specs)]


@importer("Reshape", limits="the target shape known at import (constants, shape computations)")
def reshape(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    if not isinstance(ins[1], Folded):
        raise ctx.error("the target shape must fold at import time (a constant or a shape "
                        "computation), not be computed at run time")
    allowzero = bool(node.attrs.get("allowzero", 0))
    x = ctx.required(ins[0])
    return [ctx.reshape_to(x, _reshape_targets(ctx, x, ins[1], allowzero))]


@folder("Reshape")
def fold_reshape(ctx: ImportContext, node: OnnxNode, ins: FoldedValues) -> list[Any]:
    allowzero = bool(node.attrs.get("allowzero", 0))
    x = ctx.required(ins[0])
    targets = _reshape_targets(ctx, x, ctx.required(ins[1], "shape"), allowzero)
    return [Folded.from_probes(v.reshape(t) for v, t in zip(x.values, targets))]


def _flatten_targets(ctx: ImportContext, node: OnnxNode, x: Runtime | Folded
                     ) -> list[tuple[int, int]]:
    axis = int(node.attrs.get("axis", 1))
    if not -x.ndim <= axis <= x.ndim:
        raise ctx.error(f"axis {axis} is out of range for a {x.ndim}-D input")
    if axis < 0:
        axis += x.ndim
    return [(int(np.prod(s[:axis])), int(np.prod(s[axis:]))) for s in _shapes(x)]


@importer("Flatten")
def flatten(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    x = ctx.required(ins[0])
    return [ctx.reshape_to(x, _flatten_targets(ctx, node, x))]


@folder("Flatten")
def fold_flatten(ctx: ImportContext, node: OnnxNode, ins: FoldedValues) -> list[Any]:
    x = ctx.required(ins[0])
    targets = _flatten_targets(ctx, node, x)
    return [Folded.from_probes(v.reshape(t) for v, t in zip(x.values, targets))]


def _squeezed(ctx: ImportContext, shape: tuple[int, ...], axes: list[int] | None
              ) -> tuple[int, ...]:
    if axes is None:
        return tuple(d for d in shape if d != 1)
    axes = [_axis(ctx, a, len(shape)) for a in axes]
    for a in axes:
        if shape[a] != 1:
            raise ctx.error(f"cannot squeeze axis {a} of size {shape[a]} (shape {shape})")
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _unsqueezed(ctx: ImportContext, shape: tuple[int, ...], axes: list[int] | None
                ) -> tuple[int, ...]:
    if axes is None:
        raise ctx.error("axes are required")
    ndim = len(shape) + len(axes)
    axes = sorted(_axis(ctx, a, ndim) for a in axes)
    if len(set(axes)) != len(axes):
        raise ctx.error(f"repeated axes {axes}")
    out = list(shape)
    for a in axes:
        out.insert(a, 1)
    return tuple(out)


@importer("Squeeze")
def squeeze(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    axes = _axes_input(ctx, node, ins, 1, since=13)
    x = ctx.required(ins[0])
    return [ctx.reshape_to(x, [_squeezed(ctx, s, axes) for s in _shapes(x)])]


@folder("Squeeze")
def fold_squeeze(ctx: ImportContext, node: OnnxNode, ins: FoldedValues) -> list[Any]:
    axes = _axes_input(ctx, node, ins, 1, since=13)
    x = ctx.required(ins[0])
    return [Folded.from_probes(v.reshape(_squeezed(ctx, v.shape, axes)) for v in x.values)]


@importer("Unsqueeze")
def unsqueeze(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    axes = _axes_input(ctx, node, ins, 1, since=13)
    x = ctx.required(ins[0])
    return [ctx.reshape_to(x, [_unsqueezed(ctx, s, axes) for s in _shapes(x)])]


@folder("Unsqueeze")
def fold_unsqueeze(ctx: ImportContext, node: OnnxNode, ins: FoldedValues) -> list[Any]:
    axes = _axes_input(ctx, node, ins, 1, since=13)
    x = ctx.required(ins[0])
    return [Folded.from_probes(v.reshape(_unsqueezed(ctx, v.shape, axes)) for v in x.values)]


# ---- Transpose / Concat -----------------------------------------------------------------------

def _perm(ctx: ImportContext, node: OnnxNode, ndim: int) -> tuple[int, ...]:
    perm = tuple(int(p) for p in node.attrs.get("perm", range(ndim - 1, -1, -1)))
    if sorted(perm) != list(range(ndim)):
        raise ctx.error(f"perm {list(perm)} is not a permutation of {ndim} axes")
    return perm


@importer("Transpose")
def transpose(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    x = ctx.runtime(ins[0])
    perm = _perm(ctx, node, x.ndim)
    if perm == tuple(range(x.ndim)):
        return [x]
    axis = None if x.batch_axis is None else perm.index(x.batch_axis)
    return [Runtime(ctx.apply("transpose", [x.tensor], perm=perm), axis)]


@folder("Transpose")
def fold_transpose(ctx: ImportContext, node: OnnxNode, ins: FoldedValues) -> list[Any]:
    x = ctx.required(ins[0])
    return [fold(np.transpose, x, _perm(ctx, node, x.ndim))]


@importer("Concat")
def concat(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    parts = [ctx.runtime(v, f"input {k}") for k, v in enumerate(ins) if v is not None]
    ndim = parts[0].ndim
    axis = _axis(ctx, int(node.attrs["axis"]), ndim) if "axis" in node.attrs else None
    if axis is None:
        raise ctx.error("attribute axis is missing")
    batch_axes = {p.batch_axis for p in parts}
    if len(batch_axes) > 1:
        raise ctx.error(f"concatenates tensors that carry the batch on different axes (or "
                        f"a batch tensor with a constant): shapes "
                        f"{[p.shape_at(PROBES[0]) for p in parts]} at batch {PROBES[0]}")
    y = ctx.apply("concat", [p.tensor for p in parts], axis=axis)
    return [Runtime(y, batch_axes.pop())]


@folder("Concat")
def fold_concat(ctx: ImportContext, node: OnnxNode, ins: FoldedValues) -> list[Any]:
    parts = [v for v in ins if v is not None]
    axis = int(node.attrs.get("axis", 0))
    for k in range(2):
        arrays = [p.values[k] for p in parts]
        if arrays and -arrays[0].ndim <= axis < arrays[0].ndim:
            shape = list(arrays[0].shape)
            shape[axis] = sum(a.shape[axis] if a.ndim == len(shape) else 0 for a in arrays)
            ctx.check_size(shape, np.result_type(*arrays), "the folded output")
    return [fold(lambda *a: np.concatenate(a, axis=axis), *parts)]


# ---- Pad ----------------------------------------------------------------------------------------

def _pad_mode(ctx: ImportContext, node: OnnxNode) -> str:
    mode = node.attrs.get("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if mode not in ("constant",) + MODES:
        raise ctx.error(f"mode {mode!r} is not supported (constant, reflect, edge, wrap)")
    return mode


def _pad_args(ctx: ImportContext, node: OnnxNode, ins: Values, ndim: int
              ) -> tuple[tuple[tuple[int, int], ...], float]:
    pads = ctx.ints(ins[1] if len(ins) > 1 else None, "pads")
    value = ctx.scalar(ins[2], "constant_value") if len(ins) > 2 and ins[2] is not None \
        else 0.0
    axes = list(range(ndim))
    if len(ins) > 3 and ins[3] is not None:
        axes = [_axis(ctx, a, ndim) for a in ctx.ints(ins[3], "axes")]
    if len(pads) != 2 * len(axes):
        raise ctx.error(f"pads {pads} must have 2 values per padded axis ({len(axes)})")
    if min(pads, default=0) < 0:
        raise ctx.error(f"negative pads {pads} (cropping) are not supported")
    pairs = [(0, 0)] * ndim
    for k, a in enumerate(axes):
        pairs[a] = (pads[k], pads[k + len(axes)])
    return tuple(pairs), value


@importer("Pad", limits="constant non-negative pads, none on the batch axis; reflect and edge "
                       "(and wrap) on up to 4 axes")
def pad(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    x = ctx.runtime(ins[0])
    pairs, value = _pad_args(ctx, node, ins, x.ndim)
    if x.batch_axis is not None and pairs[x.batch_axis] != (0, 0):
        raise ctx.error("cannot pad the batch axis")
    if all(p == (0, 0) for p in pairs):
        return [x]
    mode = _pad_mode(ctx, node)
    if mode != "constant":
        problem = mode_pad_problem(x.tensor.type.shape, pairs, mode)
        if problem:
            raise ctx.error(problem)
        return [Runtime(pad_modes(x.tensor, pairs, mode, op=ctx.apply), x.batch_axis)]
    return [Runtime(ctx.apply("pad", [x.tensor], pads=pairs, value=value), x.batch_axis)]


@folder("Pad")
def fold_pad(ctx: ImportContext, node: OnnxNode, ins: FoldedValues) -> list[Any]:
    x = ctx.required(ins[0])
    pairs, value = _pad_args(ctx, node, ins, x.ndim)
    mode = _pad_mode(ctx, node)
    ctx.check_folded([[d + a + b for d, (a, b) in zip(v.shape, pairs)] for v in x.values],
                     x.values[0].dtype)
    if mode != "constant":
        problem = mode_pad_problem(x.values[0].shape, pairs, mode)
        if problem:
            raise ctx.error(problem)
        return [fold(lambda a: np.pad(a, pairs, mode=mode), x)]  # type: ignore[call-overload]
    return [fold(lambda a: np.pad(a, pairs, constant_values=value), x)]


# ---- Constant, Shape and the folded shape computations -------------------------------------------

@importer("Constant")
def constant_node(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    a = node.attrs
    if "value" in a:
        value = np.asarray(a["value"])
    elif "value_float" in a:
        value = np.asarray(a["value_float"], np.float32)
    elif "value_floats" in a:
        value = np.asarray(a["value_floats"], np.float32)
    elif "value_int" in a:
        value = np.asarray(a["value_int"], np.int64)
    elif "value_ints" in a:
        value = np.asarray(a["value_ints"], np.int64)
    else:
        raise ctx.error(f"constant attribute(s) {sorted(a)} are not supported (value, "
                        f"value_float(s), value_int(s))")
    return [Folded.static(value)]


@importer("Shape")
def shape(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    x = ctx.required(ins[0])
    start = int(node.attrs.get("start", 0))
    end = node.attrs.get("end")
    shapes = []
    for s in _shapes(x):
        shapes.append(np.asarray(s[slice(start, None if end is None else int(end))],
                                 np.int64))
    return [Folded((shapes[0], shapes[1]))]


@importer("Size")
def size(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    return [Folded.from_probes(np.asarray(math.prod(s), np.int64)
                               for s in _shapes(ctx.required(ins[0])))]


@folder("Gather")
def gather(ctx: ImportContext, node: OnnxNode, ins: FoldedValues) -> list[Any]:
    axis = int(node.attrs.get("axis", 0))
    data, indices = ctx.required(ins[0], "data"), ctx.required(ins[1], "indices")
    for d, i in zip(data.values, indices.values):
        if -d.ndim <= axis < d.ndim:
            ctx.check_size(d.shape[:axis % d.ndim] + i.shape + d.shape[axis % d.ndim + 1:],
                           d.dtype, "the folded output")
    return [fold(lambda data, idx: np.take(data, idx.astype(np.int64), axis=axis),
                 ins[0], ins[1])]


def _slice(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, axes: Any, steps: Any
           ) -> np.ndarray:
    starts, ends = starts.reshape(-1), ends.reshape(-1)
    axes = range(len(starts)) if axes is None else axes.reshape(-1)
    steps = [1] * len(starts) if steps is None else steps.reshape(-1)
    index = [slice(None)] * data.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = int(a) % data.ndim
        index[a] = slice(int(s), int(e), int(st))
    return data[tuple(index)]


@folder("Slice")
def fold_slice(ctx: ImportContext, node: OnnxNode, ins: FoldedValues) -> list[Any]:
    args = list(ins) + [None] * (5 - len(ins))
    return [fold(_slice, *args[:5])]


@folder("ConstantOfShape")
def constant_of_shape(ctx: ImportContext, node: OnnxNode, ins: FoldedValues) -> list[Any]:
    value = np.asarray(node.attrs.get("value", np.zeros(1, np.float32)))
    if value.size != 1:
        raise ctx.error(f"attribute value must hold one element, got shape {value.shape}")
    shape = ctx.required(ins[0], "shape")
    ctx.check_folded([[int(d) for d in np.asarray(s).reshape(-1)] for s in shape.values],
                     value.dtype)
    return [fold(lambda s: np.full(tuple(int(d) for d in s.reshape(-1)), value.reshape(-1)[0],
                                   value.dtype), shape)]
