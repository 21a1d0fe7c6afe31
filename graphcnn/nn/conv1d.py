"""1-D convolution and pooling on (N, C, L) inputs, as torch.nn's Conv1d, ConvTranspose1d,
MaxPool1d and AvgPool1d: the 2-D ops on (N, C, 1, L), a unit height, with a reshape on
either side (the ops' kernels, VJPs and ONNX export are the 2-D ones). The parameters keep
PyTorch's 1-D layouts: weight (out_channels, in_channels/groups, k) for Conv1d,
(in_channels, out_channels/groups, k) for ConvTranspose1d, bias (out_channels,).

>>> import graphcnn as gc
>>> from graphcnn import nn
>>> x = gc.Input((4, 16))
>>> h = nn.Conv1d(4, 8, 3, padding=1)(x)
>>> nn.MaxPool1d(2)(h).shape
(None, 8, 8)
"""
from __future__ import annotations

from typing import Any, Sequence

from graphcnn.arguments import check_bool, check_int
from graphcnn.dsl import Tensor, apply, user_location
from graphcnn.errors import ArgumentError, GraphBuildError
from graphcnn.nn.module import Layer, bias_uniform, kaiming_uniform


def _single(name: str, value: Any, minimum: int, owner: str) -> int:
    """An int, or a sequence of one int (PyTorch's _single)."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        if len(value) != 1:
            raise ArgumentError(f"{owner}: {name} must be an int or a 1-tuple, got "
                                f"{tuple(value)!r} (at {user_location()})")
        value = value[0]
    return check_int(name, value, minimum, owner)


def _check_input(x: Tensor, channels: int | None, owner: str) -> None:
    if x.type.ndim != 3 or channels not in (None, x.type.shape[1]):
        c = "C" if channels is None else channels
        raise GraphBuildError(f"{owner.lower()}: {owner} expects (N, {c}, L) inputs but "
                              f"received shape {x.shape} (at {user_location()})")


def _unit_height(x: Tensor) -> Tensor:
    """(N, C, L) -> (N, C, 1, L)."""
    _, c, length = x.type.shape
    return apply("reshape", [x], shape=(-1, c, 1, length))


def _drop_height(y: Tensor) -> Tensor:
    """(N, C, 1, L) -> (N, C, L)."""
    _, c, _, length = y.type.shape
    return apply("reshape", [y], shape=(-1, c, length))


def _weight_2d(w: Tensor) -> Tensor:
    a, b, k = w.type.shape
    return apply("reshape", [w], shape=(a, b, 1, k))


def _groups(in_channels: int, out_channels: int, groups: Any, owner: str) -> int:
    groups = check_int("groups", groups, owner=owner)
    if in_channels % groups or out_channels % groups:
        raise GraphBuildError(f"{owner}: groups={groups} must divide in_channels={in_channels} "
                              f"and out_channels={out_channels} (at {user_location()})")
    return groups


class Conv1d(Layer):
    """1-D convolution, NCL, weight (out_channels, in_channels/groups, k).

    padding: an int, 'same' or 'valid'."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] = 1, padding: Any = 0,
                 dilation: int | Sequence[int] = 1, groups: int = 1, bias: bool = True,
                 name: str | None = None) -> None:
        super().__init__(name)
        owner = "Conv1d"
        self.in_channels = check_int("in_channels", in_channels, owner=owner)
        self.out_channels = check_int("out_channels", out_channels, owner=owner)
        self.groups = _groups(self.in_channels, self.out_channels, groups, owner)
        self.kernel_size = _single("kernel_size", kernel_size, 1, owner)
        self.stride = _single("stride", stride, 1, owner)
        self.dilation = _single("dilation", dilation, 1, owner)
        if isinstance(padding, str):
            if padding.lower() not in ("same", "valid"):
                raise ArgumentError(f"{owner}: padding must be an int, 'same' or 'valid', got "
                                    f"{padding!r} (at {user_location()})")
            self.padding: int | str = padding.lower()
        else:
            self.padding = _single("padding", padding, 0, owner)
        self.has_bias = check_bool("bias", bias, owner=owner)
        fan_in = self.in_channels // self.groups * self.kernel_size
        self.add_parameter("weight", kaiming_uniform(
            (self.out_channels, self.in_channels // self.groups, self.kernel_size), fan_in))
        if self.has_bias:
            self.add_parameter("bias", bias_uniform(self.out_channels, fan_in))

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_channels, "Conv1d")
        inputs = [_unit_height(x), _weight_2d(self.param("weight"))]
        if self.has_bias:
            inputs.append(self.param("bias"))
        padding = self.padding if isinstance(self.padding, str) else (0, self.padding)
        return _drop_height(apply("conv2d", inputs, stride=(1, self.stride), padding=padding,
                                  dilation=(1, self.dilation), groups=self.groups))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, groups={self.groups}")


class ConvTranspose1d(Layer):
    """1-D transposed convolution, NCL, weight (in_channels, out_channels/groups, k);
    L_out = (L_in - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] = 1, padding: int | Sequence[int] = 0,
                 output_padding: int | Sequence[int] = 0, groups: int = 1, bias: bool = True,
                 dilation: int | Sequence[int] = 1, name: str | None = None) -> None:
        super().__init__(name)
        owner = "ConvTranspose1d"
        self.in_channels = check_int("in_channels", in_channels, owner=owner)
        self.out_channels = check_int("out_channels", out_channels, owner=owner)
        self.groups = _groups(self.in_channels, self.out_channels, groups, owner)
        self.kernel_size = _single("kernel_size", kernel_size, 1, owner)
        self.stride = _single("stride", stride, 1, owner)
        self.padding = _single("padding", padding, 0, owner)
        self.output_padding = _single("output_padding", output_padding, 0, owner)
        self.dilation = _single("dilation", dilation, 1, owner)
        if self.output_padding >= max(self.stride, self.dilation):
            raise GraphBuildError(f"{owner}: output_padding {self.output_padding} must be "
                                  f"smaller than either stride {self.stride} or dilation "
                                  f"{self.dilation} (at {user_location()})")
        self.has_bias = check_bool("bias", bias, owner=owner)
        fan_in = self.out_channels // self.groups * self.kernel_size   # as torch.nn
        self.add_parameter("weight", kaiming_uniform(
            (self.in_channels, self.out_channels // self.groups, self.kernel_size), fan_in))
        if self.has_bias:
            self.add_parameter("bias", bias_uniform(self.out_channels, fan_in))

    def output_size(self, length: int) -> int:
        return ((length - 1) * self.stride - 2 * self.padding
                + self.dilation * (self.kernel_size - 1) + self.output_padding + 1)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_channels, "ConvTranspose1d")
        out = self.output_size(x.type.shape[2])
        if out < 1:
            raise GraphBuildError(f"conv_transpose1d: an input of shape {x.shape} gives an "
                                  f"empty output with padding {self.padding} "
                                  f"(at {user_location()})")
        p = self.padding
        y = apply("conv2d_input_grad", [_unit_height(x), _weight_2d(self.param("weight"))],
                  input_hw=(1, out), stride=(1, self.stride), padding=(0, 0, p, p),
                  dilation=(1, self.dilation), groups=self.groups)
        y = _drop_height(y)
        if self.has_bias:
            y = apply("add", [y, apply("reshape", [self.param("bias")],
                                       shape=(self.out_channels, 1))])
        return y

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, "
                f"output_padding={self.output_padding}, groups={self.groups}")


def _pool_attrs(owner: str, kernel_size: Any, stride: Any, padding: Any, ceil_mode: Any
                ) -> dict[str, Any]:
    kernel = _single("kernel_size", kernel_size, 1, owner)
    step = kernel if stride is None else _single("stride", stride, 1, owner)
    pad = _single("padding", padding, 0, owner)
    if pad > kernel // 2:
        raise ArgumentError(f"{owner}: padding should be at most half of kernel_size, got "
                            f"padding={padding!r} and kernel_size={kernel_size!r} "
                            f"(at {user_location()})")
    return dict(kernel_size=(1, kernel), stride=(1, step), padding=(0, pad),
                ceil_mode=check_bool("ceil_mode", ceil_mode, owner))


class MaxPool1d(Layer):
    def __init__(self, kernel_size: int | Sequence[int], stride: Any = None, padding: Any = 0,
                 dilation: Any = 1, ceil_mode: bool = False, name: str | None = None) -> None:
        super().__init__(name)
        self.attrs = dict(_pool_attrs("MaxPool1d", kernel_size, stride, padding, ceil_mode),
                          dilation=(1, _single("dilation", dilation, 1, "MaxPool1d")))

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, None, "MaxPool1d")
        return _drop_height(apply("max_pool2d", [_unit_height(x)], **self.attrs))


class AvgPool1d(Layer):
    def __init__(self, kernel_size: int | Sequence[int], stride: Any = None, padding: Any = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True,
                 name: str | None = None) -> None:
        super().__init__(name)
        self.attrs = dict(_pool_attrs("AvgPool1d", kernel_size, stride, padding, ceil_mode),
                          count_include_pad=check_bool("count_include_pad", count_include_pad,
                                                       owner="AvgPool1d"))

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, None, "AvgPool1d")
        return _drop_height(apply("avg_pool2d", [_unit_height(x)], **self.attrs))


__all__ = ["AvgPool1d", "Conv1d", "ConvTranspose1d", "MaxPool1d"]
