"""Sources: the nodes that bring tensors into a graph."""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.errors import ShapeError
from graphcnn.ir.types import TensorType
from graphcnn.ops.registry import Attr, FusionKind, no_gradient, register_op


def _fed_at_run_time(**attrs: Any) -> np.ndarray:
    raise RuntimeError(f"{attrs.get('name')!r} is fed at run time; it has no reference rule")


def _shape_tuple(value: Any) -> tuple[int, ...]:
    shape = tuple(int(d) for d in value)
    if any(d < 0 for d in shape):
        raise ShapeError(f"shape {shape} has a negative dimension")
    return shape


def source_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    return TensorType(attrs["shape"], attrs["dtype"])


register_op(
    "input", inputs=(), shape=source_shape, ref=_fed_at_run_time, vjp=no_gradient,
    kind=FusionKind.OPAQUE,
    attrs={"name": Attr(), "shape": Attr(convert=_shape_tuple), "dtype": Attr("float32")},
    doc="A tensor fed by the caller (images, labels).")

register_op(
    "param", inputs=(), shape=source_shape, ref=_fed_at_run_time, vjp=no_gradient,
    kind=FusionKind.OPAQUE,
    attrs={"name": Attr(), "shape": Attr(convert=_shape_tuple), "dtype": Attr("float32"),
           "trainable": Attr(True)},
    doc="A model tensor fed from the model at run time: a weight (trainable) or a "
        "running statistic (state).")


def constant_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    value = attrs["value"]
    return TensorType(value.shape, str(value.dtype))


def _as_constant_array(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray) and not value.flags.writeable and \
            value.dtype in (np.float32, np.float64, np.int64):
        return value  # already a frozen constant: passes copy graphs without copying weights
    array = np.array(value)  # a private copy: nobody may change a constant afterwards
    if array.dtype.kind == "f" and array.dtype != np.float64:
        array = array.astype(np.float32)
    elif array.dtype.kind in "iub":
        array = array.astype(np.int64)
    array.setflags(write=False)
    return array


register_op(
    "constant", inputs=(), shape=constant_shape, ref=lambda value, name: value,
    vjp=no_gradient, kind=FusionKind.OPAQUE,
    attrs={"value": Attr(convert=_as_constant_array), "name": Attr("")},
    doc="An array frozen into the graph (inference weights, scalars).")
