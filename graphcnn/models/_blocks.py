"""Building blocks shared by the zoo models: argument checks, conv + batch norm +
activation, and torchvision's AdaptiveAvgPool2d before a fixed-size classifier."""
from __future__ import annotations

from typing import Sequence

import graphcnn as gc
from graphcnn import nn
from graphcnn.dsl import Tensor
from graphcnn.errors import GraphBuildError


def image_input(model: str, num_classes: int, in_channels: int,
                input_size: int | Sequence[int]) -> Tensor:
    """Check the common options and return the (in_channels, H, W) image input."""
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{model}: num_classes must be an int >= 1, got {num_classes!r}")
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"{model}: in_channels must be an int >= 1, got {in_channels!r}")
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) != 2 or any(not isinstance(s, int) or s < 1 for s in size):
        raise ValueError(f"{model}: input_size must be an int or (height, width) of positive "
                         f"ints, got {input_size!r}")
    return gc.Input((in_channels,) + size, name="image")


def check_positive(model: str, name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{model}: {name} must be > 0, got {value!r}")


def spatial(x: Tensor) -> tuple[int, int]:
    """(H, W) of an NCHW tensor."""
    return int(x.type.shape[2]), int(x.type.shape[3])


def conv_bn(x: Tensor, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
            padding: int | None = None, groups: int = 1, *, conv: str, bn: str,
            eps: float = 1e-5, act: str | None = "relu") -> Tensor:
    """Conv2d (no bias) -> BatchNorm2d -> activation ('relu', 'relu6' or None).
    padding defaults to (kernel_size - 1) // 2 ("same" for odd kernels at stride 1)."""
    if padding is None:
        padding = (kernel_size - 1) // 2
    h = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                  groups=groups, bias=False, name=conv)(x)
    h = nn.BatchNorm2d(out_channels, eps=eps, name=bn)(h)
    return activation(h, act)


def activation(x: Tensor, act: str | None) -> Tensor:
    if act is None:
        return x
    if act == "relu":
        return gc.relu(x)
    if act == "relu6":
        return gc.relu6(x)
    raise ValueError(f"unknown activation {act!r}; expected 'relu', 'relu6' or None")


def adaptive_avg_pool(x: Tensor, output_size: int | tuple[int, int], model: str,
                      name: str = "avgpool") -> Tensor:
    """torchvision's nn.AdaptiveAvgPool2d(output_size) for the sizes it is exact on here:
    the identity when the feature map already has that size (224-pixel inputs), a plain
    average pooling when the size divides the feature map, and global average pooling for
    output_size 1. Other sizes raise a GraphBuildError naming the input sizes that work."""
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    h, w = spatial(x)
    if (out_h, out_w) == (1, 1):
        return nn.AdaptiveAvgPool2d(1, name=name)(x)
    if (h, w) == (out_h, out_w):
        return x
    if h % out_h == 0 and w % out_w == 0:
        return nn.AvgPool2d((h // out_h, w // out_w), name=name)(x)
    raise GraphBuildError(
        f"{model}: the feature map before the classifier is {h}x{w}, and adaptive average "
        f"pooling to {out_h}x{out_w} is only supported when {out_h}x{out_w} divides it "
        f"(it does at input_size=224); choose an input_size that gives a multiple of "
        f"{out_h}x{out_w} there")
