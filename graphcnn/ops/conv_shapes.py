"""Shape predicates of convolutions, written once: which special case a conv is.

The layout pass (passes/layout.py), the cpu backend's strategy (backends/cpu/strategy.py)
and kernels, and the cuda kernels all ask these questions about a conv; each asks here, so
the answers cannot drift apart. They look at shapes and attributes only (no dtype, no
machine): whether a kernel is *worth* running is the strategy's business, not theirs.

`w_shape` is conv2d's weight shape (O, C/groups, kH, kW); `attrs` the conv attributes
(stride, padding as (top, bottom, left, right), dilation, groups), as the graph holds them.
"""
from __future__ import annotations

from typing import Any

Shape = tuple[int, ...]


def is_pointwise(w_shape: Shape, attrs: dict[str, Any]) -> bool:
    """A 1x1 kernel at stride 1 without padding: each output pixel reads its own input
    pixel, so the input plane is already the GEMM's column matrix (any groups)."""
    return (tuple(w_shape[2:]) == (1, 1) and tuple(attrs["stride"]) == (1, 1)
            and tuple(attrs["padding"]) == (0, 0, 0, 0))


def is_depthwise(channels: int, w_shape: Shape, attrs: dict[str, Any]) -> bool:
    """One filter per channel: groups == input channels == output channels > 1."""
    return attrs["groups"] == channels == w_shape[0] > 1


def is_depthwise_3x3(channels: int, w_shape: Shape, attrs: dict[str, Any]) -> bool:
    """A depthwise conv with a 3x3 kernel and no dilation (MobileNet's): what the
    depthwise kernels of both layouts compute."""
    return (is_depthwise(channels, w_shape, attrs) and tuple(w_shape[2:]) == (3, 3)
            and tuple(attrs["dilation"]) == (1, 1))


def is_full_window(x_shape: Shape, w_shape: Shape, attrs: dict[str, Any]) -> bool:
    """One window covering the whole unpadded input (LeNet-5's c5, 16x5x5 -> 120): a dense
    layer over the flattened images, one GEMM with no im2col."""
    return (attrs["groups"] == 1 and tuple(w_shape[2:]) == tuple(x_shape[2:])
            and tuple(attrs["padding"]) == (0, 0, 0, 0) and tuple(attrs["dilation"]) == (1, 1))


def is_unpadded_unit_stride(attrs: dict[str, Any]) -> bool:
    """Stride 1, no padding, no dilation: the output rows laid end to end read the input
    rows laid end to end, one long loop per tap (LeNet-5's c1)."""
    return (tuple(attrs["stride"]) == (1, 1) and tuple(attrs["dilation"]) == (1, 1)
            and tuple(attrs["padding"]) == (0, 0, 0, 0))


def conv_operands(op: str, in_shapes: list[Shape] | tuple[Shape, ...], out_shape: Shape
                  ) -> tuple[Shape, Shape, tuple[int, int]]:
    """(input x's shape, weight's shape, conv output's H, W) of any of the three conv ops:
    conv2d (x, w) -> y, conv2d_input_grad (dy, w) -> dx, conv2d_weight_grad (dy, x) -> dw."""
    if op == "conv2d_input_grad":
        return tuple(out_shape), tuple(in_shapes[1]), _hw(in_shapes[0])
    if op == "conv2d_weight_grad":
        return tuple(in_shapes[1]), tuple(out_shape), _hw(in_shapes[0])
    return tuple(in_shapes[0]), tuple(in_shapes[1]), _hw(out_shape)


def _hw(nchw: Shape) -> tuple[int, int]:
    return nchw[2], nchw[3]
