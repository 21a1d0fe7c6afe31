"""The layers: thin objects that own parameters and record ops on symbolic tensors."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from graphcnn import functional as F
from graphcnn.arguments import (
    check_bool,
    check_int,
    check_ints,
    check_number,
    check_pair,
)
from graphcnn.dsl import Input, Tensor, apply, user_location
from graphcnn.errors import GraphBuildError
from graphcnn.model import Model
from graphcnn.nn.module import Layer, bias_uniform, kaiming_uniform


def _padding(value: Any, owner: str) -> Any:
    """Conv padding: 'same' / 'valid', or 1, 2 or 4 ints >= 0."""
    if isinstance(value, str):
        if value.lower() not in ("same", "valid"):
            from graphcnn.errors import ArgumentError
            raise ArgumentError(f"{owner}: padding must be an int, a tuple, 'same' or 'valid', "
                                f"got {value!r} (at {user_location()})")
        return value.lower()
    pads = check_ints("padding", value, (1, 2, 4), minimum=0, owner=owner)
    return pads[0] if len(pads) == 1 else pads


def _pool_args(owner: str, kernel_size: Any, stride: Any, padding: Any,
               ceil_mode: Any) -> dict[str, Any]:
    """A pool's checked arguments; padding at most half the kernel, as in PyTorch."""
    kernel = check_pair("kernel_size", kernel_size, 1, owner)
    pads = check_pair("padding", padding, 0, owner)
    if pads[0] > kernel[0] // 2 or pads[1] > kernel[1] // 2:
        from graphcnn.errors import ArgumentError
        raise ArgumentError(f"{owner}: padding should be at most half of kernel_size, got "
                            f"padding={padding!r} and kernel_size={kernel_size!r} "
                            f"(at {user_location()})")
    return dict(kernel_size=kernel,
                stride=None if stride is None else check_pair("stride", stride, 1, owner),
                padding=pads, ceil_mode=check_bool("ceil_mode", ceil_mode, owner))


class Conv2d(Layer):
    """2-D convolution, NCHW, weight (out_channels, in_channels/groups, kH, kW).

    padding: int, (pH, pW), (top, bottom, left, right), 'same' or 'valid'.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Sequence[int],
                 stride: int | Sequence[int] = 1, padding: Any = 0,
                 dilation: int | Sequence[int] = 1, groups: int = 1, bias: bool = True,
                 name: str | None = None) -> None:
        super().__init__(name)
        in_channels = check_int("in_channels", in_channels, owner="Conv2d")
        out_channels = check_int("out_channels", out_channels, owner="Conv2d")
        groups = check_int("groups", groups, owner="Conv2d")
        if in_channels % groups or out_channels % groups:
            raise GraphBuildError(
                f"Conv2d: groups={groups} must divide in_channels={in_channels} and "
                f"out_channels={out_channels} (at {user_location()})")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = check_pair("kernel_size", kernel_size, owner="Conv2d")
        self.stride = check_pair("stride", stride, owner="Conv2d")
        self.padding = _padding(padding, "Conv2d")
        self.dilation = check_pair("dilation", dilation, owner="Conv2d")
        self.groups = groups
        bias = check_bool("bias", bias, owner="Conv2d")
        fan_in = in_channels // groups * self.kernel_size[0] * self.kernel_size[1]
        self.add_parameter("weight", kaiming_uniform(
            (out_channels, in_channels // groups) + self.kernel_size, fan_in))
        self.has_bias = bias
        if bias:
            self.add_parameter("bias", bias_uniform(out_channels, fan_in))

    def forward(self, x: Tensor) -> Tensor:
        if x.type.ndim == 4 and x.type.shape[1] != self.in_channels:
            raise GraphBuildError(
                f"conv2d: Conv2d expects {self.in_channels} input channels but received an "
                f"input of shape {x.shape} with {x.type.shape[1]} channels "
                f"(at {user_location()})")
        inputs = [x, self.param("weight")] + ([self.param("bias")] if self.has_bias else [])
        return apply("conv2d", inputs, stride=self.stride, padding=self.padding,
                     dilation=self.dilation, groups=self.groups)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, groups={self.groups}")


class Linear(Layer):
    """y = x @ weight.T + bias, weight (out_features, in_features)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 name: str | None = None) -> None:
        super().__init__(name)
        in_features = check_int("in_features", in_features, owner="Linear")
        out_features = check_int("out_features", out_features, owner="Linear")
        bias = check_bool("bias", bias, owner="Linear")
        self.in_features, self.out_features = in_features, out_features
        self.add_parameter("weight", kaiming_uniform((out_features, in_features), in_features))
        self.has_bias = bias
        if bias:
            self.add_parameter("bias", bias_uniform(out_features, in_features))

    def forward(self, x: Tensor) -> Tensor:
        inputs = [x, self.param("weight")] + ([self.param("bias")] if self.has_bias else [])
        return apply("linear", inputs)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}"


class BatchNorm2d(Layer):
    """Batch normalization over axis 1 (also fits (N, C) inputs, as BatchNorm1d)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 name: str | None = None) -> None:
        super().__init__(name)
        num_features = check_int("num_features", num_features, owner="BatchNorm2d")
        eps = check_number("eps", eps, low=0.0, owner="BatchNorm2d")  # 0 allowed, as PyTorch
        momentum = check_number("momentum", momentum, 0.0, 1.0, owner="BatchNorm2d")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.add_parameter("weight", np.ones(num_features, np.float32))
        self.add_parameter("bias", np.zeros(num_features, np.float32))
        self.add_parameter("running_mean", np.zeros(num_features, np.float32), trainable=False)
        self.add_parameter("running_var", np.ones(num_features, np.float32), trainable=False)

    def forward(self, x: Tensor) -> Tensor:
        inputs = [x] + [self.param(a) for a in ("weight", "bias", "running_mean", "running_var")]
        return apply("batch_norm", inputs, eps=self.eps, momentum=self.momentum)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


BatchNorm1d = BatchNorm2d


class MaxPool2d(Layer):
    def __init__(self, kernel_size: int | Sequence[int], stride: Any = None, padding: Any = 0,
                 ceil_mode: bool = False, name: str | None = None) -> None:
        super().__init__(name)
        self.attrs = _pool_args("MaxPool2d", kernel_size, stride, padding, ceil_mode)

    def forward(self, x: Tensor) -> Tensor:
        return apply("max_pool2d", [x], **self.attrs)


class AvgPool2d(Layer):
    def __init__(self, kernel_size: int | Sequence[int], stride: Any = None, padding: Any = 0,
                 ceil_mode: bool = False, count_include_pad: bool = True,
                 name: str | None = None) -> None:
        super().__init__(name)
        self.attrs = dict(_pool_args("AvgPool2d", kernel_size, stride, padding, ceil_mode),
                          count_include_pad=check_bool("count_include_pad", count_include_pad,
                                                       owner="AvgPool2d"))

    def forward(self, x: Tensor) -> Tensor:
        return apply("avg_pool2d", [x], **self.attrs)


class GlobalAvgPool2d(Layer):
    """Mean over H and W, keeping them as size 1: (N, C, H, W) -> (N, C, 1, 1)."""

    def forward(self, x: Tensor) -> Tensor:
        return apply("global_avg_pool2d", [x])


class AdaptiveAvgPool2d(GlobalAvgPool2d):
    """Only output_size=1 (what classifiers use); other sizes are not supported yet."""

    def __init__(self, output_size: int | Sequence[int] = 1, name: str | None = None) -> None:
        super().__init__(name)
        if check_pair("output_size", output_size, owner="AdaptiveAvgPool2d") != (1, 1):
            raise GraphBuildError(f"AdaptiveAvgPool2d: only output_size=1 is supported, got "
                                  f"{output_size} (at {user_location()})")


class _Activation(Layer):
    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)


class ReLU(_Activation):
    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


class ReLU6(_Activation):
    def forward(self, x: Tensor) -> Tensor:
        return F.relu6(x)


class Sigmoid(_Activation):
    def forward(self, x: Tensor) -> Tensor:
        return F.sigmoid(x)


class Tanh(_Activation):
    def forward(self, x: Tensor) -> Tensor:
        return F.tanh(x)


class LeakyReLU(Layer):
    def __init__(self, negative_slope: float = 0.01, name: str | None = None) -> None:
        super().__init__(name)
        self.negative_slope = check_number("negative_slope", negative_slope, owner="LeakyReLU")

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)


class Softmax(Layer):
    def __init__(self, dim: int = 1, name: str | None = None) -> None:
        super().__init__(name)
        self.dim = check_int("dim", dim, minimum=-(2**31), owner=type(self).__name__)

    def forward(self, x: Tensor) -> Tensor:
        return F.softmax(x, self.dim)


class LogSoftmax(Softmax):
    def forward(self, x: Tensor) -> Tensor:
        return F.log_softmax(x, self.dim)


class Dropout(Layer):
    """Zeroes elements with probability p in training (scaling the rest by 1/(1-p));
    the identity in inference."""

    def __init__(self, p: float = 0.5, name: str | None = None) -> None:
        super().__init__(name)
        # p = 1 (PyTorch's "drop everything") is refused: the kernels scale by 1 / (1 - p)
        self.p = check_number("p", p, 0.0, 1.0, high_open=True, owner="Dropout")

    def forward(self, x: Tensor) -> Tensor:
        return apply("dropout", [x], p=self.p)


class Flatten(Layer):
    def __init__(self, start_dim: int = 1, name: str | None = None) -> None:
        super().__init__(name)
        self.start_dim = check_int("start_dim", start_dim, minimum=-(2**31), owner="Flatten")

    def forward(self, x: Tensor) -> Tensor:
        return F.flatten(x, self.start_dim)


class ZeroPad2d(Layer):
    def __init__(self, padding: int | Sequence[int], name: str | None = None) -> None:
        super().__init__(name)
        self.padding = check_ints("padding", padding, (4,), minimum=0, owner="ZeroPad2d")

    def forward(self, x: Tensor) -> Tensor:
        return F.pad2d(x, self.padding)


class Identity(Layer):
    def forward(self, x: Tensor) -> Tensor:
        return x


# ignore: Model's name is a str, a Layer's may be None; a Sequential is a Model only when
# built with input_shape (then its name is a str), and else a layer whose name may be None
class Sequential(Model, Layer):  # type: ignore[misc]
    """Layers applied in order. With `input_shape` it is also a Model you can compile;
    without, it is a layer to call inside a bigger model.

    Unnamed layers are named by position as in torch ("0.weight", "features.3.bias").
    """

    def __init__(self, *layers: Layer, input_shape: Sequence[int] | None = None,
                 name: str | None = None) -> None:
        Layer.__init__(self, name)
        self.layers = list(layers)
        self._top_level = input_shape is not None
        if input_shape is not None:
            x = Input(tuple(input_shape), name="input")
            Model.__init__(self, inputs=x, outputs=self(x), name=name or "sequential")

    def forward(self, x: Tensor) -> Tensor:
        prefix = f"{self.name}." if self.name and not self._top_level else ""
        for index, layer in enumerate(self.layers):
            if layer.name is None:
                layer.name = f"{prefix}{index}"
            x = layer(x)
        return x

    def own_parameters(self) -> list[Any]:
        return []

    def __getattr__(self, item: str) -> Any:
        if item in ("_params", "tensors", "outputs"):
            raise AttributeError(
                "this Sequential has no input_shape, so it is a layer, not a Model; "
                "pass input_shape=... to compile it")
        raise AttributeError(item)
