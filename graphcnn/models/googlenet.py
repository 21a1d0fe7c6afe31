"""GoogLeNet / Inception v1 (Szegedy et al., "Going deeper with convolutions", CVPR 2015),
as torchvision.models.googlenet without the auxiliary classifiers (aux_logits=False) and
without transform_input. As in torchvision, every conv is followed by batch norm
(eps 0.001, BasicConv2d) and the "5x5" branch of each Inception module uses a 3x3 conv."""
from __future__ import annotations

from typing import Sequence

import graphcnn as gc
from graphcnn import nn
from graphcnn.dsl import Tensor
from graphcnn.model import Model
from graphcnn.models._blocks import conv_bn, image_input

BN_EPS = 0.001

# name -> (in, 1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5" (a 3x3 conv), pool projection)
INCEPTIONS: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}


def basic_conv(x: Tensor, in_channels: int, out_channels: int, kernel_size: int,
               stride: int = 1, padding: int = 0, *, prefix: str) -> Tensor:
    """torchvision's BasicConv2d: conv (no bias) "<prefix>.conv", batch norm (eps 0.001)
    "<prefix>.bn", relu."""
    return conv_bn(x, in_channels, out_channels, kernel_size, stride, padding,
                   conv=f"{prefix}.conv", bn=f"{prefix}.bn", eps=BN_EPS)


def inception(x: Tensor, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int,
              ch5x5red: int, ch5x5: int, pool_proj: int, prefix: str) -> Tensor:
    """Four branches concatenated along channels: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 |
    3x3 max pool (stride 1, ceil mode) -> 1x1. Output channels ch1x1+ch3x3+ch5x5+pool_proj."""
    b1 = basic_conv(x, in_channels, ch1x1, 1, prefix=f"{prefix}.branch1")
    b2 = basic_conv(x, in_channels, ch3x3red, 1, prefix=f"{prefix}.branch2.0")
    b2 = basic_conv(b2, ch3x3red, ch3x3, 3, padding=1, prefix=f"{prefix}.branch2.1")
    b3 = basic_conv(x, in_channels, ch5x5red, 1, prefix=f"{prefix}.branch3.0")
    b3 = basic_conv(b3, ch5x5red, ch5x5, 3, padding=1, prefix=f"{prefix}.branch3.1")
    b4 = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True, name=f"{prefix}.branch4.0")(x)
    b4 = basic_conv(b4, in_channels, pool_proj, 1, prefix=f"{prefix}.branch4.1")
    return gc.concat([b1, b2, b3, b4], axis=1)


def googlenet(num_classes: int = 1000, *, in_channels: int = 3,
              input_size: int | Sequence[int] = 224, dropout: float = 0.2) -> Model:
    """GoogLeNet; parameter names as torchvision's state_dict ("conv1.conv.weight",
    "inception3a.branch2.1.bn.running_var", "fc.weight", ...); 6,624,904 parameters with
    1000 classes. Any input_size works (global average pooling head); 224 is the design
    size, 32 is enough for quick tests."""
    x = image_input("googlenet", num_classes, in_channels, input_size)
    h = basic_conv(x, in_channels, 64, 7, 2, 3, prefix="conv1")
    h = nn.MaxPool2d(3, stride=2, ceil_mode=True, name="maxpool1")(h)
    h = basic_conv(h, 64, 64, 1, prefix="conv2")
    h = basic_conv(h, 64, 192, 3, padding=1, prefix="conv3")
    h = nn.MaxPool2d(3, stride=2, ceil_mode=True, name="maxpool2")(h)
    for name, spec in INCEPTIONS.items():
        if name == "inception4a":
            h = nn.MaxPool2d(3, stride=2, ceil_mode=True, name="maxpool3")(h)
        elif name == "inception5a":
            h = nn.MaxPool2d(2, stride=2, ceil_mode=True, name="maxpool4")(h)
        h = inception(h, *spec, prefix=name)
    h = nn.AdaptiveAvgPool2d(1, name="avgpool")(h)
    h = nn.Dropout(dropout, name="dropout")(nn.Flatten()(h))
    logits = nn.Linear(1024, num_classes, name="fc")(h)
    return Model(inputs=x, outputs=logits, name="googlenet")
