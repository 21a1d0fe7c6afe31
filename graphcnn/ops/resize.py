"""resize2d: resampling the last two axes of N, C, H, W to an explicit size, with
torch.nn.functional.interpolate's semantics for mode="nearest" and mode="bilinear"
(align_corners False and True), and its adjoint resize2d_grad (the VJP).

Each output row (and column) reads at most two input rows (columns) with two weights,
which depend only on the sizes and the attributes: `axis_table` computes them once, on
the host, exactly as PyTorch's cpu kernels do (in the input's float type for bilinear, in
float32 for nearest, the same clamps), and every backend reads the same table.

    ratio = (in - 1) / (out - 1)                       align_corners=True (0 if out == 1)
          = 1 / scale        if a scale factor was given, else in / out   (otherwise)
    bilinear: src = ratio * dst (align_corners) or max(ratio * (dst + 0.5) - 0.5, 0)
              i0 = min(floor(src), in - 1), i1 = i0 + (i0 < in - 1), l1 = clamp(src - i0)
    nearest:  i0 = min(floor(dst * ratio), in - 1)
    out == in: the identity (i0 = i1 = dst, l0 = 1, l1 = 0), as PyTorch

`scales` is the user's scale_factor (interpolate's scale_factor without
recompute_scale_factor): PyTorch maps coordinates with 1 / scale then, not in / out, and
the two differ when in * scale is not whole (5 -> 7 at scale 1.5). Bilinear output:

    out[y, x] = l0[y] (l0[x] in[i0[y], i0[x]] + l1[x] in[i0[y], i1[x]])
              + l1[y] (l0[x] in[i1[y], i0[x]] + l1[x] in[i1[y], i1[x]])

every term computed even where its weight is 0, as PyTorch does (an Inf there makes NaN).
"""
from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import numpy as np

from graphcnn.errors import ShapeError
from graphcnn.ir.types import TensorType
from graphcnn.ops.registry import (
    Attr,
    FusionKind,
    expect_float,
    expect_ndim,
    positive_pair,
    register_op,
)

MODES = ("nearest", "bilinear")


class AxisTable(NamedTuple):
    """Per output index along one axis: the two input indexes and their weights."""
    i0: np.ndarray   # int64 (out,)
    i1: np.ndarray   # int64 (out,)
    l0: np.ndarray   # float (out,), the input's float type
    l1: np.ndarray


def axis_table(in_size: int, out_size: int, mode: str, align_corners: bool,
               scale: float | None, dtype: Any = np.float32) -> AxisTable:
    """The source indexes and weights of one axis, as PyTorch's cpu kernels compute them."""
    ft = np.dtype(np.float32 if mode == "nearest" else dtype).type
    dst = np.arange(out_size, dtype=np.int64)
    if out_size == in_size:
        return AxisTable(dst, dst.copy(), np.ones(out_size, dtype), np.zeros(out_size, dtype))
    if mode == "bilinear" and align_corners:
        ratio = ft(in_size - 1) / ft(out_size - 1) if out_size > 1 else ft(0)
    elif scale is not None and scale > 0:
        ratio = ft(1.0 / scale)   # 1 / scale in double, then rounded, as PyTorch
    else:
        ratio = ft(in_size) / ft(out_size)
    with np.errstate(all="ignore"):
        if mode == "nearest":
            i0 = np.minimum(np.floor(dst.astype(ft) * ratio).astype(np.int64), in_size - 1)
            return AxisTable(i0, i0.copy(), np.ones(out_size, dtype), np.zeros(out_size, dtype))
        if align_corners:
            src = ratio * dst.astype(ft)
        else:
            src = np.maximum(ratio * (dst.astype(ft) + ft(0.5)) - ft(0.5), ft(0))
        i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
        l1 = np.clip(src - i0.astype(ft), ft(0), ft(1))
    i1 = i0 + (i0 < in_size - 1)
    return AxisTable(i0, i1, (ft(1) - l1).astype(dtype), l1.astype(dtype))


def tables(in_hw: tuple[int, int], out_hw: tuple[int, int], attrs: dict[str, Any],
           dtype: Any) -> tuple[AxisTable, AxisTable]:
    """The (height, width) tables of a resize2d / resize2d_grad node."""
    scales = attrs["scales"] or (None, None)
    return tuple(axis_table(i, o, attrs["mode"], attrs["align_corners"], s, dtype)
                 for i, o, s in zip(in_hw, out_hw, scales))  # type: ignore[return-value]


@functools.lru_cache(maxsize=256)
def kernel_tables(in_hw: tuple[int, int], out_hw: tuple[int, int], mode: str,
                  align_corners: bool, scales: tuple[float, float] | None, dtype: str
                  ) -> tuple[AxisTable, AxisTable]:
    """`tables`, cached for the kernels (which run at every call with the same sizes).
    The arrays are shared: never write to them."""
    return tables(in_hw, out_hw, dict(mode=mode, align_corners=align_corners,
                                      scales=scales), np.dtype(dtype))


class InverseTable(NamedTuple):
    """One axis of the adjoint, gathered: the outputs that read input index i are
    outs[ptr[i]:ptr[i + 1]], with their weights (CSR)."""
    ptr: np.ndarray     # int64 (in + 1,)
    outs: np.ndarray    # int64 (terms,)
    weight: np.ndarray  # float (terms,)


def inverse_table(t: AxisTable, in_size: int, mode: str) -> InverseTable:
    """The adjoint's gather lists, so a kernel sums into each input pixel without atomics
    (nearest has one term per output, bilinear two, a weight-0 one included)."""
    outs = np.arange(len(t.i0), dtype=np.int64)
    src, dst, wt = [t.i0], [outs], [t.l0]
    if mode == "bilinear":
        src, dst, wt = src + [t.i1], dst + [outs], wt + [t.l1]
    src_all, dst_all, wt_all = np.concatenate(src), np.concatenate(dst), np.concatenate(wt)
    order = np.argsort(src_all, kind="stable")
    ptr = np.zeros(in_size + 1, np.int64)
    np.cumsum(np.bincount(src_all, minlength=in_size), out=ptr[1:])
    return InverseTable(ptr, dst_all[order], wt_all[order])


@functools.lru_cache(maxsize=256)
def kernel_inverse_tables(in_hw: tuple[int, int], out_hw: tuple[int, int], mode: str,
                          align_corners: bool, scales: tuple[float, float] | None,
                          dtype: str) -> tuple[InverseTable, InverseTable]:
    th, tw = kernel_tables(in_hw, out_hw, mode, align_corners, scales, dtype)
    return inverse_table(th, in_hw[0], mode), inverse_table(tw, in_hw[1], mode)


def interpolation_matrix(t: AxisTable, in_size: int) -> np.ndarray:
    """The (out, in) matrix of one axis (tests and documentation: out = A x along it)."""
    a = np.zeros((len(t.i0), in_size), np.float64)
    np.add.at(a, (np.arange(len(t.i0)), t.i0), t.l0)
    np.add.at(a, (np.arange(len(t.i0)), t.i1), t.l1)
    return a


# ---- attributes and shapes --------------------------------------------------------------

def _mode(value: Any) -> str:
    if value not in MODES:
        raise ShapeError(f"mode must be one of {MODES}, got {value!r}")
    return str(value)


def _scales(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ShapeError(f"scales must be None or (scale_h, scale_w), got {value!r}") from None
    if len(out) != 2 or not all(math.isfinite(s) and s > 0 for s in out):
        raise ShapeError(f"scales must be two positive numbers, got {value!r}")
    return (out[0], out[1])


def _attrs(extra: dict[str, Attr] | None = None) -> dict[str, Attr]:
    return {"size": Attr(convert=positive_pair("size")), "mode": Attr("nearest", convert=_mode),
            "align_corners": Attr(False, convert=bool), "scales": Attr(None, convert=_scales),
            **(extra or {})}


def _check_align(attrs: dict[str, Any]) -> None:
    if attrs["align_corners"] and attrs["mode"] != "bilinear":
        raise ShapeError("align_corners=True applies to mode 'bilinear' only, "
                         f"not {attrs['mode']!r}")


def resize_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    x = in_types[0]
    expect_float(x, "input")
    expect_ndim(x, 4, "resize2d input", "N, C, H, W")
    _check_align(attrs)
    return TensorType(x.shape[:2] + tuple(attrs["size"]), x.dtype)


def resize_ref(x: np.ndarray, size: tuple[int, int], mode: str, align_corners: bool,
               scales: tuple[float, float] | None) -> np.ndarray:
    th, tw = tables(x.shape[2:], size, dict(mode=mode, align_corners=align_corners,
                                           scales=scales), x.dtype)
    if mode == "nearest":
        return x[:, :, th.i0][:, :, :, tw.i0].copy()
    with np.errstate(all="ignore"):   # Inf * 0 is NaN, as in PyTorch
        def along_w(rows: np.ndarray) -> np.ndarray:
            return rows[..., tw.i0] * tw.l0 + rows[..., tw.i1] * tw.l1
        r0, r1 = along_w(x[:, :, th.i0]), along_w(x[:, :, th.i1])
        return (r0 * th.l0[:, None] + r1 * th.l1[:, None]).astype(x.dtype)


def resize_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    a = node.attrs
    return [graph.add("resize2d_grad", [cot[0]], input_hw=node.inputs[0].shape[2:],
                      size=a["size"], mode=a["mode"], align_corners=a["align_corners"],
                      scales=a["scales"])]


register_op("resize2d", inputs=("x",), shape=resize_shape, ref=resize_ref, vjp=resize_vjp,
            kind=FusionKind.INJECTIVE, attrs=_attrs(),
            doc="Resample H and W of N, C, H, W to `size` as "
                "torch.nn.functional.interpolate (mode 'nearest' or 'bilinear', "
                "align_corners; `scales` is the scale_factor PyTorch maps coordinates "
                "with, None: in/out).")


# ---- the adjoint ------------------------------------------------------------------------

def resize_grad_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    dy = in_types[0]
    expect_float(dy, "dy")
    expect_ndim(dy, 4, "resize2d_grad dy", "N, C, H_out, W_out")
    _check_align(attrs)
    if dy.shape[2:] != tuple(attrs["size"]):
        raise ShapeError(f"dy of shape {dy.shape} does not match the resized size "
                         f"{attrs['size']}")
    return TensorType(dy.shape[:2] + tuple(attrs["input_hw"]), dy.dtype)


def resize_grad_ref(dy: np.ndarray, input_hw: tuple[int, int], size: tuple[int, int],
                    mode: str, align_corners: bool,
                    scales: tuple[float, float] | None) -> np.ndarray:
    """dx[i, j] = sum over outputs (y, x) reading (i, j) of their weight * dy[y, x]: the
    transpose of the forward's sums, along W then along H (each weight-0 term included,
    as the forward includes it; nearest has one term)."""
    th, tw = tables(input_hw, size, dict(mode=mode, align_corners=align_corners,
                                         scales=scales), dy.dtype)
    n, c = dy.shape[:2]
    terms_w = [(tw.i0, tw.l0)] + ([(tw.i1, tw.l1)] if mode == "bilinear" else [])
    terms_h = [(th.i0, th.l0)] + ([(th.i1, th.l1)] if mode == "bilinear" else [])
    with np.errstate(all="ignore"):
        rows = np.zeros((n, c, size[0], input_hw[1]), dy.dtype)
        every = slice(None)
        for index, weight in terms_w:
            at: Any = (every, every, every, index)
            np.add.at(rows, at, dy * weight)
        dx = np.zeros((n, c) + tuple(input_hw), dy.dtype)
        for index, weight in terms_h:
            at = (every, every, index)
            np.add.at(dx, at, rows * weight[:, None])
    return dx


def resize_grad_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    # resize2d_grad is linear in dy and the transpose of resize2d: its VJP is resize2d
    a = node.attrs
    return [graph.add("resize2d", [cot[0]], size=a["size"], mode=a["mode"],
                      align_corners=a["align_corners"], scales=a["scales"])]


register_op("resize2d_grad", inputs=("dy",), shape=resize_grad_shape, ref=resize_grad_ref,
            vjp=resize_grad_vjp, kind=FusionKind.OPAQUE,
            attrs=_attrs({"input_hw": Attr(convert=positive_pair("input_hw"))}),
            doc="The VJP of resize2d: dy (N, C, *size) to dx (N, C, *input_hw), each input "
                "pixel summing the weighted dy of the outputs that read it.")
