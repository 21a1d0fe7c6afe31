"""MobileNet v2 (Sandler et al., "MobileNetV2: Inverted residuals and linear
bottlenecks", CVPR 2018), as torchvision.models.mobilenet_v2: ReLU6, inverted residual
blocks (1x1 expansion, 3x3 depthwise, linear 1x1 projection; a residual connection when
the shape is kept), channel counts rounded to multiples of 8, dropout 0.2 before the
classifier."""
from __future__ import annotations

from typing import Sequence

from graphcnn import nn
from graphcnn.dsl import Tensor
from graphcnn.model import Model
from graphcnn.models._blocks import check_positive, conv_bn, image_input

# (expansion t, output channels c, repeats n, first stride s), from the paper's Table 2
SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """torchvision's _make_divisible: round to the nearest multiple of divisor, not below
    min_value (default divisor) and not more than 10% below value."""
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def inverted_residual(x: Tensor, in_channels: int, out_channels: int, stride: int,
                      expand_ratio: int, prefix: str) -> Tensor:
    """"<prefix>.conv.<k>": [1x1 conv-bn-relu6 to in*t (if t != 1)], 3x3 depthwise
    conv-bn-relu6 (stride), 1x1 conv, bn (no activation); + x when stride 1 and in == out."""
    hidden = int(round(in_channels * expand_ratio))
    h = x
    k = 0
    if expand_ratio != 1:
        h = conv_bn(h, in_channels, hidden, 1, conv=f"{prefix}.conv.0.0",
                    bn=f"{prefix}.conv.0.1", act="relu6")
        k = 1
    h = conv_bn(h, hidden, hidden, 3, stride, groups=hidden, conv=f"{prefix}.conv.{k}.0",
                bn=f"{prefix}.conv.{k}.1", act="relu6")
    h = conv_bn(h, hidden, out_channels, 1, conv=f"{prefix}.conv.{k + 1}",
                bn=f"{prefix}.conv.{k + 2}", act=None)
    if stride == 1 and in_channels == out_channels:
        h = x + h
    return h


def mobilenet_v2(num_classes: int = 1000, *, width_mult: float = 1.0, in_channels: int = 3,
                 input_size: int | Sequence[int] = 224, dropout: float = 0.2,
                 round_nearest: int = 8) -> Model:
    """MobileNet v2; parameter names as torchvision's state_dict ("features.0.0.weight",
    "features.3.conv.1.1.running_mean", "features.18.0.weight", "classifier.1.bias").
    3,504,872 parameters with 1000 classes at width_mult 1. Channels are
    make_divisible(c * width_mult, round_nearest); the last conv has
    make_divisible(1280 * max(1, width_mult)) channels. Any input_size works."""
    check_positive("mobilenet_v2", "width_mult", width_mult)
    x = image_input("mobilenet_v2", num_classes, in_channels, input_size)
    channels = make_divisible(32 * width_mult, round_nearest)
    last_channels = make_divisible(1280 * max(1.0, width_mult), round_nearest)
    h = conv_bn(x, in_channels, channels, 3, 2, conv="features.0.0", bn="features.0.1",
                act="relu6")
    index = 1
    for t, c, n, s in SETTINGS:
        out = make_divisible(c * width_mult, round_nearest)
        for i in range(n):
            h = inverted_residual(h, channels, out, s if i == 0 else 1, t, f"features.{index}")
            channels = out
            index += 1
    h = conv_bn(h, channels, last_channels, 1, conv=f"features.{index}.0",
                bn=f"features.{index}.1", act="relu6")
    h = nn.AdaptiveAvgPool2d(1, name="avgpool")(h)
    h = nn.Dropout(dropout, name="classifier.0")(nn.Flatten()(h))
    logits = nn.Linear(last_channels, num_classes, name="classifier.1")(h)
    return Model(inputs=x, outputs=logits, name="mobilenet_v2")
