"""transpose: permute the axes (numpy.transpose, ONNX Transpose). It computes nothing;
its VJP is the transpose by the inverse permutation."""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.errors import ShapeError
from graphcnn.ir.types import TensorType
from graphcnn.ops.registry import Attr, FusionKind, register_op

# ---- transpose ----------------------------------------------------------------------------

def _perm_attr(value: Any) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise ShapeError(f"perm must be a sequence of ints, got {value!r}") from None


def _canonical_perm(in_types: list[TensorType], attrs: dict[str, Any]) -> dict[str, Any]:
    if not in_types:
        return attrs
    ndim, perm = in_types[0].ndim, attrs["perm"]
    if perm == ():  # empty: reverse the axes, as numpy.transpose(x) and ONNX's default
        perm = tuple(reversed(range(ndim)))
    if len(perm) != ndim or sorted(p % ndim if -ndim <= p < ndim else -1 for p in perm) \
            != list(range(ndim)):
        raise ShapeError(f"perm {perm} is not a permutation of the {ndim} axes of shape "
                         f"{in_types[0].shape}")
    return {**attrs, "perm": tuple(p % ndim for p in perm)}


def transpose_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    x = in_types[0]
    return TensorType(tuple(x.shape[p] for p in attrs["perm"]), x.dtype)


def transpose_ref(x: np.ndarray, perm: tuple[int, ...]) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(x, perm))


def inverse_perm(perm: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(perm))


def transpose_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    return [graph.add("transpose", [cot[0]], perm=inverse_perm(node.attrs["perm"]))]


register_op("transpose", inputs=("x",), shape=transpose_shape, ref=transpose_ref,
            vjp=transpose_vjp, kind=FusionKind.INJECTIVE,
            attrs={"perm": Attr((), convert=_perm_attr)}, canonicalize=_canonical_perm,
            doc="Permute the axes: output axis i is input axis perm[i] (numpy.transpose); "
                "an empty perm reverses them.")
