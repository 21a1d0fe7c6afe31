"""Pooling, with PyTorch's exact semantics: max_pool2d (padding never wins, the first
maximum in scan order takes the gradient; a NaN is the maximum of its window, the last one
taking the gradient), avg_pool2d (count_include_pad, and windows
clipped to the padded input under ceil_mode), and global_avg_pool2d."""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.errors import ShapeError
from graphcnn.ir.types import TensorType
from graphcnn.ops.registry import (
    Attr,
    FusionKind,
    as_int_pair,
    expect_float,
    expect_ndim,
    no_second_order,
    positive_pair,
    register_op,
)
from graphcnn.ops.window import check_window_fits, pool_out_size


def _stride(value: Any) -> tuple[int, int] | None:
    return None if value is None else positive_pair("stride")(value)


def _padding(value: Any) -> tuple[int, int]:
    pads = as_int_pair("padding")(value)
    if min(pads) < 0:
        raise ShapeError(f"padding must be non-negative, got {pads}")
    return pads


def pool_canonicalize(in_types: list[TensorType], attrs: dict[str, Any]) -> dict[str, Any]:
    """stride=None means stride = kernel_size, as in torch.nn.MaxPool2d."""
    if attrs["stride"] is None:
        attrs = dict(attrs, stride=attrs["kernel_size"])
    return attrs


POOL_ATTRS = {
    "kernel_size": Attr(convert=positive_pair("kernel_size")),
    "stride": Attr(None, _stride),
    "padding": Attr((0, 0), _padding),
    "ceil_mode": Attr(False, bool),
}
MAX_ATTRS = dict(POOL_ATTRS, dilation=Attr((1, 1), positive_pair("dilation")))
AVG_ATTRS = dict(POOL_ATTRS, count_include_pad=Attr(True, bool))


def pool_out_hw(in_hw: tuple[int, ...], attrs: dict[str, Any]) -> tuple[int, int]:
    k, s, p = attrs["kernel_size"], attrs["stride"], attrs["padding"]
    d = attrs.get("dilation", (1, 1))
    return (pool_out_size(in_hw[0], p[0], k[0], s[0], d[0], attrs["ceil_mode"]),
            pool_out_size(in_hw[1], p[1], k[1], s[1], d[1], attrs["ceil_mode"]))


def pool_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    x = in_types[0]
    expect_float(x, "input")
    expect_ndim(x, 4, "pooling input", "N, C, H, W")
    k, p = attrs["kernel_size"], attrs["padding"]
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ShapeError(f"padding {p} must be at most half the kernel size {k}")
    d = attrs.get("dilation", (1, 1))
    check_window_fits(x.shape[2:], (p[0], p[0], p[1], p[1]), k, d)
    return TensorType(x.shape[:2] + pool_out_hw(x.shape[2:], attrs), x.dtype)


def _windows(in_hw: tuple[int, ...], attrs: dict[str, Any]):
    """Yield (i, j, rows, cols): for kernel tap (i, j), the input row/col index of every
    output position (may fall outside the input: padding or the ceil_mode overhang)."""
    out_hw = pool_out_hw(in_hw, attrs)
    (kh, kw), (sh, sw), (ph, pw) = attrs["kernel_size"], attrs["stride"], attrs["padding"]
    dh, dw = attrs.get("dilation", (1, 1))
    for i in range(kh):
        for j in range(kw):
            yield (i, j, np.arange(out_hw[0]) * sh - ph + i * dh,
                   np.arange(out_hw[1]) * sw - pw + j * dw)


def _gather(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, fill: float) -> np.ndarray:
    """x[..., rows, cols] with `fill` where the index is outside the input."""
    h, w = x.shape[-2:]
    rin, cin = (rows >= 0) & (rows < h), (cols >= 0) & (cols < w)
    vals = x[..., np.clip(rows, 0, h - 1)[:, None], np.clip(cols, 0, w - 1)[None, :]]
    return np.where(rin[:, None] & cin[None, :], vals, fill)


# ---- max pooling -------------------------------------------------------------------------

def _max_with_argmax(x: np.ndarray, attrs: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Maximum per window and the flat index (h * W + w) of the element that gives it,
    PyTorch's rule: the window's first input element, then each one that is greater or
    NaN (so a NaN anywhere makes the maximum NaN, its index that of the last NaN; a window
    of -inf gives -inf at its first element). Padding never wins: it is not an element."""
    h, width = x.shape[2:]
    best = np.full(x.shape[:2] + pool_out_hw(x.shape[2:], attrs), -np.inf, x.dtype)
    best_index = np.full(best.shape, -1, np.int64)
    for _, _, rows, cols in _windows(x.shape[2:], attrs):
        vals = _gather(x, rows, cols, -np.inf)
        inside = ((rows >= 0) & (rows < h))[:, None] & ((cols >= 0) & (cols < width))[None, :]
        index = rows[:, None] * width + cols[None, :]
        take = inside & ((best_index < 0) | (vals > best) | np.isnan(vals))
        best = np.where(take, vals, best)
        best_index = np.where(take, index, best_index)
    return best, best_index


def max_pool2d_ref(x: np.ndarray, **attrs: Any) -> np.ndarray:
    return _max_with_argmax(x, attrs)[0].astype(x.dtype)


def max_pool2d_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    return [graph.add("max_pool2d_grad", [cot[0], node.inputs[0]], **node.attrs)]


def max_pool2d_grad_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    dy, x = in_types
    expected = pool_shape([x], attrs)
    if dy.shape != expected.shape:
        raise ShapeError(f"output gradient has shape {dy.shape}, expected {expected.shape}")
    return x


def max_pool2d_grad_ref(dy: np.ndarray, x: np.ndarray, **attrs: Any) -> np.ndarray:
    _, argmax = _max_with_argmax(x, attrs)
    n, c, h, w = x.shape
    dx = np.zeros((n * c, h * w))
    planes = np.arange(n * c)[:, None]
    np.add.at(dx, (planes, argmax.reshape(n * c, -1)), dy.reshape(n * c, -1).astype(np.float64))
    return dx.reshape(x.shape).astype(dy.dtype)


register_op("max_pool2d", inputs=("x",), shape=pool_shape, ref=max_pool2d_ref,
            vjp=max_pool2d_vjp, kind=FusionKind.OUT_ELEMWISE_FUSABLE, attrs=MAX_ATTRS,
            canonicalize=pool_canonicalize)
register_op("max_pool2d_grad", inputs=("dy", "x"), shape=max_pool2d_grad_shape,
            ref=max_pool2d_grad_ref, vjp=no_second_order,
            kind=FusionKind.OUT_ELEMWISE_FUSABLE,
            attrs=MAX_ATTRS, canonicalize=pool_canonicalize,
            doc="Routes each output gradient to the first maximum of its window (its "
                "last NaN, if any).")


# ---- average pooling -----------------------------------------------------------------------

def avg_divisors(in_hw: tuple[int, ...], attrs: dict[str, Any]) -> np.ndarray:
    """The divisor of every output position, (OH, OW), as PyTorch computes it: the window
    clipped to the padded input, then (without count_include_pad) to the input."""
    out_hw = pool_out_hw(in_hw, attrs)
    (kh, kw), (sh, sw), (ph, pw) = attrs["kernel_size"], attrs["stride"], attrs["padding"]
    sizes = []
    for out, size, k, s, p in ((out_hw[0], in_hw[0], kh, sh, ph), (out_hw[1], in_hw[1], kw, sw, pw)):
        start = np.arange(out) * s - p
        end = np.minimum(start + k, size + p)
        if not attrs["count_include_pad"]:
            start, end = np.maximum(start, 0), np.minimum(end, size)
        sizes.append(end - start)
    return (sizes[0][:, None] * sizes[1][None, :]).astype(np.float64)


def avg_pool2d_ref(x: np.ndarray, **attrs: Any) -> np.ndarray:
    total = sum(_gather(x.astype(np.float64), rows, cols, 0.0)
                for _, _, rows, cols in _windows(x.shape[2:], attrs))
    return (total / avg_divisors(x.shape[2:], attrs)).astype(x.dtype)


def avg_pool2d_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    return [graph.add("avg_pool2d_grad", [cot[0]], input_hw=node.inputs[0].shape[2:],
                      **node.attrs)]


def avg_pool2d_grad_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    dy = in_types[0]
    expect_float(dy, "output gradient")
    expect_ndim(dy, 4, "output gradient", "N, C, OH, OW")
    in_hw = attrs["input_hw"]
    if dy.shape[2:] != pool_out_hw(in_hw, attrs):
        raise ShapeError(f"output gradient has shape {dy.shape}, but an input of size {in_hw} "
                         f"pools to {pool_out_hw(in_hw, attrs)}")
    return TensorType(dy.shape[:2] + tuple(in_hw), dy.dtype)


def avg_pool2d_grad_ref(dy: np.ndarray, input_hw: tuple[int, int], **attrs: Any) -> np.ndarray:
    h, w = input_hw
    share = dy.astype(np.float64) / avg_divisors(input_hw, attrs)
    dx = np.zeros(dy.shape[:2] + (h, w))
    for _, _, rows, cols in _windows(input_hw, attrs):
        r_ok, c_ok = (rows >= 0) & (rows < h), (cols >= 0) & (cols < w)
        # Within one tap, distinct outputs hit distinct input pixels (stride >= 1), so a
        # fancy-indexed += does not lose updates.
        dx[:, :, rows[r_ok][:, None], cols[c_ok][None, :]] += share[:, :, r_ok][:, :, :, c_ok]
    return dx.astype(dy.dtype)


def avg_pool2d_grad_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    # avg_pool2d_grad is the transpose of avg_pool2d: its own VJP is avg_pool2d.
    attrs = {k: v for k, v in node.attrs.items() if k != "input_hw"}
    return [graph.add("avg_pool2d", [cot[0]], **attrs)]


register_op("avg_pool2d", inputs=("x",), shape=pool_shape, ref=avg_pool2d_ref,
            vjp=avg_pool2d_vjp, kind=FusionKind.OUT_ELEMWISE_FUSABLE, attrs=AVG_ATTRS,
            canonicalize=pool_canonicalize)
register_op("avg_pool2d_grad", inputs=("dy",), shape=avg_pool2d_grad_shape,
            ref=avg_pool2d_grad_ref, vjp=avg_pool2d_grad_vjp,
            kind=FusionKind.OUT_ELEMWISE_FUSABLE,
            attrs=dict(AVG_ATTRS, input_hw=Attr(convert=positive_pair("input_hw"))),
            canonicalize=pool_canonicalize)


# ---- global average pooling ------------------------------------------------------------------

def global_avg_pool2d_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    x = in_types[0]
    expect_float(x, "input")
    expect_ndim(x, 4, "global_avg_pool2d input", "N, C, H, W")
    return TensorType(x.shape[:2] + (1, 1), x.dtype)


def global_avg_pool2d_ref(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64).mean(axis=(2, 3), keepdims=True).astype(x.dtype)


def global_avg_pool2d_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    x = node.inputs[0]
    scale = graph.constant(np.asarray(1.0 / (x.shape[2] * x.shape[3]), dtype=x.dtype))
    return [graph.add("mul", [graph.add("broadcast_to", [cot[0]], shape=x.shape), scale])]


register_op("global_avg_pool2d", inputs=("x",), shape=global_avg_pool2d_shape,
            ref=global_avg_pool2d_ref, vjp=global_avg_pool2d_vjp, kind=FusionKind.REDUCTION,
            doc="Mean over H and W: (N, C, H, W) -> (N, C, 1, 1).")
