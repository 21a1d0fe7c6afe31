"""MobileNet v1 (Howard et al., "MobileNets: Efficient convolutional neural networks for
mobile vision applications", 2017): a 3x3 conv then 13 depthwise-separable blocks
(3x3 depthwise conv-bn-relu, 1x1 pointwise conv-bn-relu), global average pooling and a
fully-connected classifier. The standard 1.0/224 model has 4,231,976 parameters with
1000 classes (as Keras' MobileNet, whose 1x1-conv classifier is this Linear)."""
from __future__ import annotations

from typing import Sequence

from graphcnn import nn
from graphcnn.model import Model
from graphcnn.models._blocks import check_positive, conv_bn, image_input

# (output channels of the pointwise conv, stride of the depthwise conv)
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)


def mobilenet_v1(num_classes: int = 1000, *, width_mult: float = 1.0, in_channels: int = 3,
                 input_size: int | Sequence[int] = 224, dropout: float = 0.001) -> Model:
    """MobileNet v1 with width multiplier `width_mult` (alpha: every layer has
    int(c * alpha) channels, at least 1). Parameter names: "features.0.0/1" (the first conv
    and its batch norm), "features.<i>.0/1" (depthwise conv, bn) and "features.<i>.3/4"
    (pointwise conv, bn) for blocks i = 1..13, and "classifier.1" (Linear; classifier.0 is
    the dropout, p=0.001 as in Keras). Any input_size works (global average pooling)."""
    check_positive("mobilenet_v1", "width_mult", width_mult)
    x = image_input("mobilenet_v1", num_classes, in_channels, input_size)

    def ch(c: int) -> int:
        return max(1, int(c * width_mult))

    channels = ch(32)
    h = conv_bn(x, in_channels, channels, 3, 2, conv="features.0.0", bn="features.0.1")
    for i, (out, stride) in enumerate(BLOCKS, start=1):
        h = conv_bn(h, channels, channels, 3, stride, groups=channels,
                    conv=f"features.{i}.0", bn=f"features.{i}.1")
        h = conv_bn(h, channels, ch(out), 1, conv=f"features.{i}.3", bn=f"features.{i}.4")
        channels = ch(out)
    h = nn.AdaptiveAvgPool2d(1, name="avgpool")(h)
    h = nn.Dropout(dropout, name="classifier.0")(nn.Flatten()(h))
    logits = nn.Linear(channels, num_classes, name="classifier.1")(h)
    return Model(inputs=x, outputs=logits, name="mobilenet_v1")
