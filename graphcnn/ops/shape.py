"""Data movement: reshape, flatten, concat, pad and slice.

None of these compute anything; their gradients move the cotangent back (reshape to the
input shape, slice out each concatenated part, slice away the padding, pad a slice with
zeros). Attributes stay symbolic where the batch may change: `reshape`'s 0 means "copy the
input's size at this position", so a recipe recorded with batch 1 replays at any batch.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.errors import ShapeError
from graphcnn.ir.types import TensorType
from graphcnn.ops.registry import Attr, FusionKind, register_op


def _int_tuple(name: str):
    def convert(value: Any) -> tuple[int, ...]:
        if isinstance(value, (int, np.integer)):
            value = (value,)
        try:
            return tuple(int(v) for v in value)
        except (TypeError, ValueError):
            raise ShapeError(f"{name} must be a sequence of ints, got {value!r}") from None
    return convert


def normalize_axis(axis: int, ndim: int, what: str = "axis") -> int:
    """A Python-style axis (negative counts from the end) as 0..ndim-1, or a ShapeError."""
    if not -ndim <= axis < ndim:
        raise ShapeError(f"{what} {axis} is out of range for a {ndim}-D tensor "
                         f"(valid: {-ndim} to {ndim - 1})")
    return axis % ndim


def _size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


# ---- reshape / flatten ------------------------------------------------------------------

def _reshape_spec(value: Any) -> tuple[int, ...]:
    shape = _int_tuple("shape")(value)
    if any(d < -1 for d in shape):
        raise ShapeError(f"shape {shape} has a negative size other than -1")
    if shape.count(-1) > 1:
        raise ShapeError(f"shape {shape} may infer (-1) at most one dimension")
    return shape


def resolve_shape(in_shape: tuple[int, ...], spec: tuple[int, ...]) -> tuple[int, ...]:
    """The concrete shape `spec` means for an input of `in_shape`: 0 copies the input's
    size at that position, one -1 is inferred from the total size."""
    out = []
    for i, d in enumerate(spec):
        if d == 0:
            if i >= len(in_shape):
                raise ShapeError(f"shape {spec}: 0 at position {i} copies an input dimension, "
                                 f"but the input {in_shape} has only {len(in_shape)}")
            d = in_shape[i]
        out.append(d)
    total = _size(in_shape)
    if -1 in out:
        known = _size(tuple(d for d in out if d != -1))
        if known == 0 or total % known:
            raise ShapeError(f"cannot reshape {in_shape} ({total} elements) to {spec}: "
                             f"the -1 dimension cannot be inferred")
        out[out.index(-1)] = total // known
    if _size(tuple(out)) != total:
        raise ShapeError(f"cannot reshape {in_shape} ({total} elements) to {spec} "
                         f"= {tuple(out)} ({_size(tuple(out))} elements)")
    return tuple(out)


def reshape_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    x = in_types[0]
    return TensorType(resolve_shape(x.shape, attrs["shape"]), x.dtype)


def reshape_ref(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return x.reshape(resolve_shape(x.shape, shape)).copy()


def _reshape_back(graph: Any, g: Any, like: Any) -> Any:
    if g.shape == like.shape:
        return g
    return graph.add("reshape", [g], shape=like.shape)


def reshape_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    return [_reshape_back(graph, cot[0], node.inputs[0])]


register_op("reshape", inputs=("x",), shape=reshape_shape, ref=reshape_ref, vjp=reshape_vjp,
            kind=FusionKind.INJECTIVE, attrs={"shape": Attr(convert=_reshape_spec)},
            doc="x with a new shape of the same size; 0 copies the input's size at that "
                "position, one -1 is inferred (ONNX Reshape).")


def _canonical_start_dim(in_types: list[TensorType], attrs: dict[str, Any]) -> dict[str, Any]:
    ndim = max(in_types[0].ndim, 1) if in_types else 1
    return {**attrs, "start_dim": normalize_axis(attrs["start_dim"], ndim, "start_dim")}


def flatten_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    x, start = in_types[0], attrs["start_dim"]
    return TensorType(x.shape[:start] + (_size(x.shape[start:]),), x.dtype)


def flatten_ref(x: np.ndarray, start_dim: int) -> np.ndarray:
    return x.reshape(x.shape[:start_dim] + (_size(x.shape[start_dim:]),)).copy()


register_op("flatten", inputs=("x",), shape=flatten_shape, ref=flatten_ref, vjp=reshape_vjp,
            kind=FusionKind.INJECTIVE, attrs={"start_dim": Attr(1, convert=int)},
            canonicalize=_canonical_start_dim,
            doc="Merge the axes from start_dim on into one (torch.flatten, end_dim=-1).")


# ---- concat -----------------------------------------------------------------------------

def _canonical_axis(in_types: list[TensorType], attrs: dict[str, Any]) -> dict[str, Any]:
    if not in_types:
        return attrs
    return {**attrs, "axis": normalize_axis(attrs["axis"], in_types[0].ndim)}


def concat_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    axis, first = attrs["axis"], in_types[0]
    shapes = ", ".join(str(t.shape) for t in in_types)
    for t in in_types[1:]:
        if t.dtype != first.dtype:
            raise ShapeError(f"all inputs must have the same dtype; got "
                             f"{', '.join(t.dtype for t in in_types)}")
        if t.ndim != first.ndim or any(a != b for i, (a, b) in
                                       enumerate(zip(t.shape, first.shape)) if i != axis):
            raise ShapeError(f"cannot concatenate shapes {shapes} along axis {axis}: "
                             f"all other dimensions must match")
    size = sum(t.shape[axis] for t in in_types)
    return TensorType(first.shape[:axis] + (size,) + first.shape[axis + 1:], first.dtype)


def concat_ref(*xs: np.ndarray, axis: int) -> np.ndarray:
    return np.concatenate(xs, axis=axis)


def concat_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    axis, out = node.attrs["axis"], cot[0]
    grads, offset = [], 0
    for x in node.inputs:
        starts = [0] * x.type.ndim
        ends = list(out.shape)
        starts[axis], ends[axis] = offset, offset + x.shape[axis]
        offset += x.shape[axis]
        grads.append(out if len(node.inputs) == 1 else
                     graph.add("slice", [out], starts=tuple(starts), ends=tuple(ends)))
    return grads


register_op("concat", inputs=("xs*",), shape=concat_shape, ref=concat_ref, vjp=concat_vjp,
            kind=FusionKind.INJECTIVE, attrs={"axis": Attr(1, convert=int)},
            canonicalize=_canonical_axis,
            doc="Join tensors along `axis`; the other dimensions must match.")


# ---- pad / slice ------------------------------------------------------------------------

def _pads_attr(value: Any) -> tuple[tuple[int, int], ...]:
    try:
        pads = tuple((int(p[0]), int(p[1])) if len(p) == 2 else None for p in value)
    except (TypeError, ValueError):
        raise ShapeError(f"pads must be ((before, after), ...) per axis, got {value!r}") from None
    pairs = tuple(p for p in pads if p is not None)
    if len(pairs) != len(pads):
        raise ShapeError(f"pads must be ((before, after), ...) per axis, got {value!r}")
    if any(b < 0 or a < 0 for b, a in pairs):
        raise ShapeError(f"pads must be non-negative, got {pairs}")
    return pairs


def pad_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    x, pads = in_types[0], attrs["pads"]
    if len(pads) != x.ndim:
        raise ShapeError(f"pads has {len(pads)} (before, after) pairs, the input is "
                         f"{x.ndim}-D (shape {x.shape}); give one pair per axis")
    return TensorType(tuple(d + b + a for d, (b, a) in zip(x.shape, pads)), x.dtype)


def pad_ref(x: np.ndarray, pads: tuple[tuple[int, int], ...], value: float) -> np.ndarray:
    return np.pad(x, pads, mode="constant", constant_values=value).astype(x.dtype)


def pad_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    x, pads = node.inputs[0], node.attrs["pads"]
    starts = tuple(b for b, _ in pads)
    ends = tuple(b + d for (b, _), d in zip(pads, x.shape))
    return [graph.add("slice", [cot[0]], starts=starts, ends=ends)]


register_op("pad", inputs=("x",), shape=pad_shape, ref=pad_ref, vjp=pad_vjp,
            kind=FusionKind.INJECTIVE,
            attrs={"pads": Attr(convert=_pads_attr), "value": Attr(0.0, convert=float)},
            doc="Constant padding: pads = ((before, after), ...), one pair per axis.")


def slice_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    x, starts, ends = in_types[0], attrs["starts"], attrs["ends"]
    if len(starts) != x.ndim or len(ends) != x.ndim:
        raise ShapeError(f"starts {starts} and ends {ends} must have one entry per axis of "
                         f"the {x.ndim}-D input (shape {x.shape})")
    for axis, (s, e, d) in enumerate(zip(starts, ends, x.shape)):
        if not 0 <= s <= e <= d:
            raise ShapeError(f"slice [{s}:{e}] on axis {axis} is out of range for shape "
                             f"{x.shape} (need 0 <= start <= end <= size)")
    return TensorType(tuple(e - s for s, e in zip(starts, ends)), x.dtype)


def slice_ref(x: np.ndarray, starts: tuple[int, ...], ends: tuple[int, ...]) -> np.ndarray:
    return x[tuple(slice(s, e) for s, e in zip(starts, ends))].copy()


def slice_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    x, a = node.inputs[0], node.attrs
    pads = tuple((s, d - e) for s, e, d in zip(a["starts"], a["ends"], x.shape))
    return [graph.add("pad", [cot[0]], pads=pads, value=0.0)]


register_op("slice", inputs=("x",), shape=slice_shape, ref=slice_ref, vjp=slice_vjp,
            kind=FusionKind.INJECTIVE,
            attrs={"starts": Attr(convert=_int_tuple("starts")),
                   "ends": Attr(convert=_int_tuple("ends"))},
            doc="x[starts[0]:ends[0], starts[1]:ends[1], ...] (step 1, one pair per axis).")
