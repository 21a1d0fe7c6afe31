"""Group normalization, and instance normalization as its case of one channel per group.

x is (N, C, ...); its C channels are split into `num_groups` groups of C / G consecutive
channels, and each (sample, group) is normalized with its own mean and biased variance
over its channels and spatial positions (M = C / G * S values), then scaled and shifted
per channel:  y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c].

nn.GroupNorm(G, C) is this op; nn.InstanceNorm2d(C) is it with G = C (torch's instance
norm with track_running_stats=False: every call uses the instance's own statistics).
ONNX GroupNormalization and InstanceNormalization import to it.

The gradient is one op, `group_norm_grad`, that recomputes the statistics from x (two
passes over a group, cheaper than keeping them between the passes of a training step).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.errors import ShapeError
from graphcnn.ir.types import TensorType
from graphcnn.ops.registry import Attr, FusionKind, expect_float, no_second_order, register_op


def _positive_int(name: str):
    def convert(value: Any) -> int:
        value = int(value)
        if value < 1:
            raise ShapeError(f"{name} must be >= 1, got {value}")
        return value
    return convert


def _non_negative(value: Any) -> float:
    value = float(value)
    if not value >= 0:
        raise ShapeError(f"eps must be >= 0, got {value}")
    return value


_ATTRS = {"num_groups": Attr(convert=_positive_int("num_groups")),
          "eps": Attr(1e-5, convert=_non_negative)}


def _check(x: TensorType, params: list[TensorType], names: tuple[str, ...],
           groups: int) -> None:
    expect_float(x, "input")
    if x.ndim < 2:
        raise ShapeError(f"group norm input must be (N, C, ...), got shape {x.shape}")
    channels = x.shape[1]
    if channels % groups:
        raise ShapeError(f"group norm: {channels} channels (input shape {x.shape}) do not "
                         f"split into {groups} groups")
    for t, name in zip(params, names):
        if t.shape != (channels,) or t.dtype != x.dtype:
            raise ShapeError(f"group norm {name} must be {x.dtype} of shape ({channels},) "
                             f"for an input of shape {x.shape}, got {t}")


def group_norm_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    _check(in_types[0], in_types[1:], ("weight", "bias"), attrs["num_groups"])
    return in_types[0]


def grouped(x: np.ndarray, groups: int) -> np.ndarray:
    """(N, C, ...) as (N, G, C / G * S) in float64: one row per normalized group."""
    return x.astype(np.float64).reshape(x.shape[0], groups, -1)


def group_statistics(x: np.ndarray, groups: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """xhat as (N, G, M) and 1 / sqrt(var + eps) as (N, G, 1), in float64."""
    g = grouped(x, groups)
    # NaN and inf spread through their group (inf - inf = NaN), and eps = 0 on a constant
    # group divides by 0: as torch, without NumPy's warnings
    with np.errstate(all="ignore"):
        mean = g.mean(axis=2, keepdims=True)
        centred = g - mean
        var = (centred * centred).mean(axis=2, keepdims=True)
        rstd = 1.0 / np.sqrt(var + eps)
        return centred * rstd, rstd


def _per_channel(v: np.ndarray, x: np.ndarray) -> np.ndarray:
    return v.astype(np.float64).reshape((1, x.shape[1]) + (1,) * (x.ndim - 2))


def group_norm_ref(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, num_groups: int,
                   eps: float) -> np.ndarray:
    xhat, _ = group_statistics(x, num_groups, eps)
    with np.errstate(all="ignore"):
        y = xhat.reshape(x.shape) * _per_channel(weight, x) + _per_channel(bias, x)
    return y.astype(x.dtype)


def group_norm_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    x, weight, _ = node.inputs
    grads = graph.add_node("group_norm_grad", [cot[0], x, weight], dict(node.attrs))
    return list(grads.outputs)


register_op("group_norm", inputs=("x", "weight", "bias"), shape=group_norm_shape,
            ref=group_norm_ref, vjp=group_norm_vjp, kind=FusionKind.OPAQUE, attrs=_ATTRS,
            doc="Group norm over (N, C, ...): each sample's C / num_groups-channel groups "
                "normalized by their own mean and biased variance, then * weight[c] + "
                "bias[c]. Instance norm is num_groups = C.")


def group_norm_grad_shape(in_types: list[TensorType], attrs: dict[str, Any]
                          ) -> list[TensorType]:
    dy, x, weight = in_types
    if dy != x:
        raise ShapeError(f"group norm gradient: the cotangent {dy} and the input {x} must match")
    _check(x, [weight], ("weight",), attrs["num_groups"])
    return [x, weight, weight]


def group_norm_grad_ref(dy: np.ndarray, x: np.ndarray, weight: np.ndarray, num_groups: int,
                        eps: float) -> list[np.ndarray]:
    xhat, rstd = group_statistics(x, num_groups, eps)
    with np.errstate(all="ignore"):
        return _group_norm_grad(dy, x, weight, num_groups, xhat, rstd)


def _group_norm_grad(dy: np.ndarray, x: np.ndarray, weight: np.ndarray, num_groups: int,
                     xhat: np.ndarray, rstd: np.ndarray) -> list[np.ndarray]:
    dy64 = dy.astype(np.float64)
    sum_axes = (0,) + tuple(range(2, x.ndim))
    dweight = (dy64 * xhat.reshape(x.shape)).sum(axis=sum_axes)
    dbias = dy64.sum(axis=sum_axes)
    # the gradient of xhat: gy = dy * weight; per group of M values,
    # dx = rstd / M * (M gy - sum(gy) - xhat sum(gy xhat))
    gy = grouped(dy64 * _per_channel(weight, x), num_groups)
    m = gy.shape[2]
    sum_gy = gy.sum(axis=2, keepdims=True)
    sum_gy_xhat = (gy * xhat).sum(axis=2, keepdims=True)
    dx = rstd / max(m, 1) * (m * gy - sum_gy - xhat * sum_gy_xhat)
    return [dx.reshape(x.shape).astype(x.dtype), dweight.astype(x.dtype),
            dbias.astype(x.dtype)]


register_op("group_norm_grad", inputs=("dy", "x", "weight"), shape=group_norm_grad_shape,
            ref=group_norm_grad_ref, vjp=no_second_order, kind=FusionKind.OPAQUE,
            attrs=_ATTRS,
            doc="(dx, dweight, dbias) of group_norm; the statistics recomputed from x.")
