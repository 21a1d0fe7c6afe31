"""ConvTranspose2d: the transposed ("fractionally strided") convolution, as torch.nn's.

A transposed convolution is the gradient of a convolution with respect to its input, so
the layer records the `conv2d_input_grad` op (one source of truth for its shape rule,
reference, VJP and kernels) plus the bias. PyTorch's semantics and weight layout:

    weight (in_channels, out_channels / groups, kH, kW), bias (out_channels,)
    H_out = (H_in - 1) * stride - 2 * padding + dilation * (kH - 1) + output_padding + 1

`padding` crops the full output on both sides; `output_padding` adds rows and columns at
the bottom and right only (it picks one of the input sizes that a strided convolution
maps to the same output size), and must be smaller than the stride or the dilation.
"""
from __future__ import annotations

from typing import Sequence

from graphcnn.arguments import check_bool, check_int, check_pair
from graphcnn.dsl import Tensor, apply, user_location
from graphcnn.errors import GraphBuildError
from graphcnn.nn.module import Layer, bias_uniform, kaiming_uniform


class ConvTranspose2d(Layer):
    """2-D transposed convolution, NCHW, weight (in_channels, out_channels/groups, kH, kW).

    >>> import graphcnn as gc
    >>> from graphcnn import nn
    >>> x = gc.Input((8, 5, 5))
    >>> nn.ConvTranspose2d(8, 4, 2, stride=2)(x).shape
    (None, 4, 10, 10)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                 output_padding: int | Sequence[int] = 0, groups: int = 1, bias: bool = True,
                 dilation: int | Sequence[int] = 1, name: str | None = None) -> None:
        super().__init__(name)
        owner = "ConvTranspose2d"
        in_channels = check_int("in_channels", in_channels, owner=owner)
        out_channels = check_int("out_channels", out_channels, owner=owner)
        groups = check_int("groups", groups, owner=owner)
        if in_channels % groups or out_channels % groups:
            raise GraphBuildError(
                f"{owner}: groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels} (at {user_location()})")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = check_pair("kernel_size", kernel_size, owner=owner)
        self.stride = check_pair("stride", stride, owner=owner)
        self.padding = check_pair("padding", padding, 0, owner=owner)
        self.output_padding = check_pair("output_padding", output_padding, 0, owner=owner)
        self.dilation = check_pair("dilation", dilation, owner=owner)
        for axis in range(2):
            if self.output_padding[axis] >= max(self.stride[axis], self.dilation[axis]):
                raise GraphBuildError(
                    f"{owner}: output_padding {self.output_padding} must be smaller than "
                    f"either stride {self.stride} or dilation {self.dilation} "
                    f"(at {user_location()})")
        self.has_bias = check_bool("bias", bias, owner=owner)
        # torch.nn computes fan_in from the weight's dimension 1: out_channels/groups * k*k
        fan_in = out_channels // groups * self.kernel_size[0] * self.kernel_size[1]
        self.add_parameter("weight", kaiming_uniform(
            (in_channels, out_channels // groups) + self.kernel_size, fan_in))
        if self.has_bias:
            self.add_parameter("bias", bias_uniform(out_channels, fan_in))

    def output_size(self, in_hw: Sequence[int]) -> tuple[int, int]:
        """(H_out, W_out) for an input of spatial size `in_hw`."""
        return tuple(
            (i - 1) * s - 2 * p + d * (k - 1) + op + 1
            for i, s, p, d, k, op in zip(in_hw, self.stride, self.padding, self.dilation,
                                         self.kernel_size, self.output_padding))

    def forward(self, x: Tensor) -> Tensor:
        if x.type.ndim != 4 or x.type.shape[1] != self.in_channels:
            raise GraphBuildError(
                f"conv_transpose2d: ConvTranspose2d expects (N, {self.in_channels}, H, W) "
                f"inputs but received shape {x.shape} (at {user_location()})")
        out_hw = self.output_size(x.type.shape[2:])
        if min(out_hw) < 1:
            raise GraphBuildError(
                f"conv_transpose2d: an input of shape {x.shape} gives an empty output "
                f"{out_hw} with padding {self.padding} (at {user_location()})")
        ph, pw = self.padding
        # The convolution this one transposes maps an out_hw image back to the input's size;
        # output_padding only adds rows and columns that convolution's window never reaches.
        y = apply("conv2d_input_grad", [x, self.param("weight")], input_hw=out_hw,
                  stride=self.stride, padding=(ph, ph, pw, pw), dilation=self.dilation,
                  groups=self.groups)
        if self.has_bias:
            y = apply("add", [y, apply("reshape", [self.param("bias")],
                                       shape=(self.out_channels, 1, 1))])
        return y

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, "
                f"output_padding={self.output_padding}, groups={self.groups}")
