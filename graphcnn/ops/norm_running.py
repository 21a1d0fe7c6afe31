"""The running-variance update of training batch norm, with its count taken at run time.

PyTorch blends the *unbiased* batch variance into the running estimate:
``running_var = (1 - m) running_var + m * var * M / (M - 1)``, M the values per channel
(batch x spatial, times the ranks under synchronized batch norm). M / (M - 1) depends on
the batch, so it is no graph constant: an op reads M from its `x` input's shape at each
call, which lets one training graph serve any batch size (graphcnn/runtime/dynamic_batch.py:
a replay at a smaller batch would otherwise keep the largest batch's factor). `x` is read
for its shape only.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.errors import ShapeError
from graphcnn.ir.types import TensorType
from graphcnn.ops.registry import Attr, FusionKind, expect_float, register_op


def unbiased_factor(x_shape: tuple[int, ...], world_size: int) -> float:
    """M / (M - 1) for an input of `x_shape` (N, C, ...) over `world_size` ranks (1 when
    M is 1: PyTorch's batch norm refuses that batch before it gets here)."""
    channels = max(int(x_shape[1]), 1)
    count = int(np.prod(x_shape, dtype=np.int64)) // channels * world_size
    return count / max(count - 1, 1)


def running_var_update_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    running_var, var, x = in_types
    expect_float(x, "input")
    if x.ndim < 2:
        raise ShapeError(f"running_var_update: the input must be (N, C, ...), got {x.shape}")
    want = TensorType((x.shape[1],), x.dtype)
    for name, t in (("running_var", running_var), ("var", var)):
        if t != want:
            raise ShapeError(f"running_var_update: {name} must be {want} for an input of "
                             f"shape {x.shape}, got {t}")
    return want


def running_var_update_ref(running_var: np.ndarray, var: np.ndarray, x: np.ndarray,
                           momentum: float, world_size: int) -> np.ndarray:
    # the same two products and sum, in the input's dtype, as the mul/add nodes this op
    # replaced: the numbers stay bit for bit those of a fixed-batch graph
    dtype = running_var.dtype.type
    kept = running_var * dtype(1.0 - momentum)
    new = var * dtype(momentum * unbiased_factor(x.shape, world_size))
    return (kept + new).astype(running_var.dtype)


def running_var_update_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    # linear in (running_var, var): d running_var = (1 - m) g; d var = m M/(M - 1) g, the
    # op itself with a zero running_var; x is read for its shape only
    g = cot[0]
    running_var, _, x = node.inputs
    m = node.attrs["momentum"]
    d_running = graph.add("mul", [g, graph.constant(np.asarray(1.0 - m, g.dtype))])
    zeros = graph.constant(np.zeros(running_var.shape, running_var.dtype))
    d_var = graph.add("running_var_update", [zeros, g, x], momentum=m,
                      world_size=node.attrs["world_size"])
    return [d_running, d_var, None]


def _world_size(value: Any) -> int:
    size = int(value)
    if size < 1:
        raise ShapeError(f"running_var_update: world_size must be >= 1, got {size}")
    return size


register_op("running_var_update", inputs=("running_var", "var", "x"),
            shape=running_var_update_shape, ref=running_var_update_ref,
            vjp=running_var_update_vjp, kind=FusionKind.OPAQUE,
            attrs={"momentum": Attr(convert=float), "world_size": Attr(1, convert=_world_size)},
            doc="(1 - momentum) running_var + momentum var M / (M - 1), M = x.size / C times "
                "world_size read from x's shape at run time (batch norm's running variance "
                "in training, PyTorch's unbiased convention).")
