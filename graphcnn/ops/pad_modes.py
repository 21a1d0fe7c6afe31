"""Padding by the input's own values: 'reflect' (x[1], x[2], ... mirrored around the
edge, the edge itself not repeated: torch's ReflectionPad), 'edge' (the border value
repeated: torch's ReplicationPad) and 'wrap' (the opposite border: circular padding), as
np.pad and ONNX Pad name them. Constant padding is the `pad` op (shape.py).

Every output element copies one input element, axis by axis: output index o on an axis
reads input index map[o] (`source_map`). The gradient, `mode_pad_grad`, sums the
cotangent of every output position that read an input element: per axis the inverse of
the map (`inverse_map`, in CSR form: the output positions of input index i are
positions[offsets[i]:offsets[i + 1]]), so each kernel is a gather (no atomics), and an
input element sums its at most (1 + pad) positions per axis.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.errors import ShapeError
from graphcnn.ir.types import TensorType
from graphcnn.ops.registry import Attr, FusionKind, expect_float, register_op
from graphcnn.ops.shape import _pads_attr

MODES = ("reflect", "edge", "wrap")
MAX_RANK = 4   # the kernels' view (leading axes of size 1); ONNX's CNN pads are 4-D


def _mode(value: Any) -> str:
    if value not in MODES:
        raise ShapeError(f"pad mode must be one of {', '.join(MODES)}, got {value!r}")
    return str(value)


def mode_pad_problem(shape: tuple[int, ...], pads: tuple[tuple[int, int], ...],
                     mode: str) -> str | None:
    """Why `mode` cannot pad `shape` by `pads` (None: it can): reflect needs pads below
    the size (as torch), edge a non-empty axis, wrap pads at most the size."""
    if len(pads) != len(shape):
        return (f"pads has {len(pads)} (before, after) pairs, the input is {len(shape)}-D "
                f"(shape {shape}); give one pair per axis")
    for axis, ((b, a), d) in enumerate(zip(pads, shape)):
        if b == a == 0:
            continue
        if mode == "reflect" and max(b, a) >= d:
            return (f"reflect padding ({b}, {a}) on axis {axis} must be below the axis size "
                    f"{d}")
        if mode == "edge" and d == 0:
            return f"edge padding of the empty axis {axis}"
        if mode == "wrap" and max(b, a) > d:
            return f"wrap padding ({b}, {a}) on axis {axis} exceeds the axis size {d}"
    return None


def source_map(size: int, before: int, after: int, mode: str) -> np.ndarray:
    """The input index each output position of one axis reads (int64)."""
    t = np.arange(-before, size + after, dtype=np.int64)
    if mode == "edge":
        return np.clip(t, 0, size - 1)
    if mode == "wrap":
        return t % size
    t = np.abs(t)                                  # reflect: mirror at 0 ...
    return np.where(t >= size, 2 * (size - 1) - t, t)   # ... and at size - 1


def inverse_map(size: int, before: int, after: int, mode: str
                ) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, positions): the output positions that read input index i are
    positions[offsets[i]:offsets[i + 1]], in increasing order."""
    src = source_map(size, before, after, mode)
    positions = np.argsort(src, kind="stable").astype(np.int64)
    offsets = np.zeros(size + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=size), out=offsets[1:])
    return offsets, positions


def mode_pad_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    x, pads, mode = in_types[0], attrs["pads"], attrs["mode"]
    expect_float(x, "input")
    if x.ndim > MAX_RANK:
        raise ShapeError(f"{mode} padding supports inputs of up to {MAX_RANK} axes, got "
                         f"shape {x.shape}")
    problem = mode_pad_problem(x.shape, pads, mode)
    if problem:
        raise ShapeError(f"{problem} (input shape {x.shape})")
    return TensorType(tuple(d + b + a for d, (b, a) in zip(x.shape, pads)), x.dtype)


def mode_pad_ref(x: np.ndarray, pads: tuple[tuple[int, int], ...], mode: str) -> np.ndarray:
    return np.pad(x, pads, mode=mode).astype(x.dtype)  # type: ignore[call-overload]


def mode_pad_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    a = node.attrs
    return [graph.add("mode_pad_grad", [cot[0]], pads=a["pads"], mode=a["mode"],
                      input_shape=node.inputs[0].shape)]


_ATTRS = {"pads": Attr(convert=_pads_attr), "mode": Attr(convert=_mode)}

register_op("mode_pad", inputs=("x",), shape=mode_pad_shape, ref=mode_pad_ref,
            vjp=mode_pad_vjp, kind=FusionKind.INJECTIVE, attrs=_ATTRS,
            doc="Pad with the input's own values: mode 'reflect' (no edge repeat), 'edge' "
                "or 'wrap', as np.pad; pads = ((before, after), ...), one pair per axis.")


def mode_pad_grad_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    dy, shape = in_types[0], tuple(attrs["input_shape"])
    expected = mode_pad_shape([TensorType(shape, dy.dtype)], attrs)
    if dy.shape != expected.shape:
        raise ShapeError(f"the cotangent {dy} does not match the padded shape "
                         f"{expected.shape} of input shape {shape}")
    return TensorType(shape, dy.dtype)


def mode_pad_grad_ref(dy: np.ndarray, pads: tuple[tuple[int, int], ...], mode: str,
                      input_shape: tuple[int, ...]) -> np.ndarray:
    g = dy.astype(np.float64)
    for axis, ((b, a), d) in enumerate(zip(pads, input_shape)):
        if b == a == 0:
            continue
        moved = np.moveaxis(g, axis, 0)
        acc = np.zeros((d,) + moved.shape[1:])
        with np.errstate(all="ignore"):
            np.add.at(acc, source_map(d, b, a, mode), moved)
        g = np.moveaxis(acc, 0, axis)
    with np.errstate(over="ignore"):   # a float64 sum past float32's range: inf, as torch
        return g.astype(dy.dtype)


def mode_pad_grad_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    # linear in dy, the transpose of mode_pad: its own transpose is mode_pad
    return [graph.add("mode_pad", [cot[0]], pads=node.attrs["pads"], mode=node.attrs["mode"])]


register_op("mode_pad_grad", inputs=("dy",), shape=mode_pad_grad_shape,
            ref=mode_pad_grad_ref, vjp=mode_pad_grad_vjp, kind=FusionKind.OPAQUE,
            attrs=dict(_ATTRS, input_shape=Attr(convert=lambda v: tuple(int(d) for d in v))),
            doc="The gradient of mode_pad: each input element sums the cotangent of every "
                "output position that copied it.")
