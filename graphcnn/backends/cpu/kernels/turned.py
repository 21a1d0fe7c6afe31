"""The input gradient of a stride-1 convolution as a forward convolution, so it runs on the
forward conv's fastest kernels (the packed GEMMs, the implicit GEMM, Winograd F(2x2) and
F(4x4) on packed panels) with no col2im scatter-add:

    dx = conv2d(dy, w turned),   w turned[c, o, i, j] = w[o, c, kH-1-i, kW-1-j],
                                 padded by k - 1 - p on each side

At stride 1 every dx pixel is a full correlation of dy's neighbourhood with the turned
filters, which is what a forward conv computes; at stride 2 dx's pixels would need dy
dilated by zeros (a quarter of the multiply-adds wasted), so those keep the GEMM + col2im.

The padding rows the forward kernels read are zeros, and 0 * Inf is NaN: with an infinite
weight, dx's border pixels would be NaN where the reference's scatter never multiplied
them. The strategy wraps these kernels in conv.exact_on_nonfinite, as it does Winograd's.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from graphcnn.backends.cpu.aligned import aligned_empty
from graphcnn.backends.cpu.kernels import (
    implicit_gemm,
    packed_gemm,
    packed_images,
    winograd,
    winograd4,
)

Shape = tuple[int, ...]


def applies(w_shape: Shape, attrs: dict[str, Any]) -> bool:
    """A one-group conv of stride 1, no dilation, padded by less than its kernel on each
    side (every 'same' or 'valid' conv): its dx is a forward conv of dy."""
    kh, kw = w_shape[2:]
    top, bottom, left, right = attrs["padding"]
    return (tuple(attrs["stride"]) == (1, 1) and tuple(attrs["dilation"]) == (1, 1)
            and attrs["groups"] == 1 and max(top, bottom) < kh and max(left, right) < kw)


def turned_attrs(w_shape: Shape, attrs: dict[str, Any]) -> dict[str, Any]:
    """The forward conv's attributes: dy padded by k - 1 - p on each side."""
    kh, kw = w_shape[2:]
    top, bottom, left, right = attrs["padding"]
    return dict(stride=(1, 1), dilation=(1, 1), groups=1,
                padding=(kh - 1 - top, kh - 1 - bottom, kw - 1 - left, kw - 1 - right))


def turned_shape(w_shape: Shape) -> Shape:
    """(C, O, kH, kW): the turned weight's shape."""
    return (w_shape[1], w_shape[0]) + tuple(w_shape[2:])


def turned_weight(w: np.ndarray) -> np.ndarray:
    """w (O, C, kH, kW) transposed to (C, O, kH, kW), each filter's taps reversed."""
    turned = aligned_empty(turned_shape(w.shape), w.dtype)
    turned[...] = w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
    return turned


def _packed(width: int) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    def prepare(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        turned = turned_weight(w)
        return turned, packed_gemm.packed_conv_weights(turned, width)
    return prepare


# algorithm -> (w -> the weight in its kernel's form, made once for a frozen weight and at
# each call for a live one; the forward kernel f(dy, turned, dx, attrs, prepared)).
PREPARE: dict[str, Callable[[np.ndarray], Any]] = {
    "packed": _packed(packed_gemm.MR),
    "packed-channels": _packed(packed_gemm.LANES),
    "implicit": _packed(packed_gemm.MR),
    "winograd-packed": lambda w: winograd.weight_transform(w, flip=True, packed=True),
    "winograd-f4": lambda w: winograd4.weight_transform(w, flip=True),
}
_FORWARD = {
    "packed": packed_images.conv2d_packed,
    "packed-channels": packed_images.conv2d_packed_channels,
    "implicit": implicit_gemm.conv2d_implicit_gemm,
}


def input_grad(algorithm: str, dy: np.ndarray, w: np.ndarray, dx: np.ndarray,
               attrs: dict[str, Any], prepared: Any = None) -> None:
    """dx = conv2d_input_grad(dy, w) by `algorithm`'s forward kernel, for a conv `applies`
    accepts (float32); `prepared`: PREPARE[algorithm](w) made already."""
    prepared = PREPARE[algorithm](w) if prepared is None else prepared
    if algorithm == "winograd-packed":
        winograd.conv2d_input_grad_winograd(dy, w, dx, attrs, prepared, packed=True)
        return
    if algorithm == "winograd-f4":
        winograd4.conv2d_input_grad_winograd4(dy, w, dx, attrs, prepared)
        return
    turned, panels = prepared
    _FORWARD[algorithm](dy, turned, dx, turned_attrs(w.shape, attrs), panels)


def scratch(algorithm: str, dy_shape: Shape, w_shape: Shape, dx_shape: Shape,
            attrs: dict[str, Any]) -> dict[str, tuple[Shape, np.dtype]]:
    """The workspaces input_grad takes, by role (its forward kernel's formula)."""
    if algorithm == "winograd-packed":
        return winograd.run_scratch(dy_shape, dx_shape, np.float32, packed=True)
    if algorithm == "winograd-f4":
        return winograd4.run_scratch(dy_shape, dx_shape)
    turned, forward = turned_shape(w_shape), turned_attrs(w_shape, attrs)
    out_hw = (dx_shape[2], dx_shape[3])
    if algorithm == "implicit":
        return implicit_gemm.implicit_scratch(turned, out_hw, forward, dy_shape[0])
    width = packed_gemm.LANES if algorithm == "packed-channels" else packed_gemm.MR
    return packed_images.conv_scratch(dy_shape, turned, out_hw, forward, width)
