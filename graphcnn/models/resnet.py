"""ResNet (He, Zhang, Ren and Sun, "Deep residual learning for image recognition",
CVPR 2016), as torchvision.models.resnet*: "v1.5", i.e. a Bottleneck downsamples with
the stride on its 3x3 conv (the paper puts it on the first 1x1)."""
from __future__ import annotations

from typing import Callable, Sequence

from graphcnn import nn
from graphcnn.dsl import Tensor
from graphcnn.model import Model
from graphcnn.models._blocks import check_positive, conv_bn, image_input

# depth -> (block, blocks per stage)
CONFIGS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
EXPANSION = {"basic": 1, "bottleneck": 4}


def _downsample(x: Tensor, in_channels: int, out_channels: int, stride: int,
                prefix: str) -> Tensor:
    """The projection shortcut: 1x1 conv (stride) + batch norm, "<prefix>.downsample.0/1"."""
    return conv_bn(x, in_channels, out_channels, 1, stride, 0, conv=f"{prefix}.downsample.0",
                   bn=f"{prefix}.downsample.1", act=None)


def basic_block(x: Tensor, in_channels: int, planes: int, stride: int, prefix: str) -> Tensor:
    """3x3 conv (stride) - bn - relu - 3x3 conv - bn, + shortcut, relu."""
    h = conv_bn(x, in_channels, planes, 3, stride, conv=f"{prefix}.conv1", bn=f"{prefix}.bn1")
    h = conv_bn(h, planes, planes, 3, conv=f"{prefix}.conv2", bn=f"{prefix}.bn2", act=None)
    shortcut = x
    if stride != 1 or in_channels != planes:
        shortcut = _downsample(x, in_channels, planes, stride, prefix)
    return nn.ReLU()(h + shortcut)


def bottleneck(x: Tensor, in_channels: int, planes: int, stride: int, prefix: str) -> Tensor:
    """1x1 conv - bn - relu - 3x3 conv (stride) - bn - relu - 1x1 conv (4 * planes) - bn,
    + shortcut, relu."""
    out = planes * EXPANSION["bottleneck"]
    h = conv_bn(x, in_channels, planes, 1, conv=f"{prefix}.conv1", bn=f"{prefix}.bn1")
    h = conv_bn(h, planes, planes, 3, stride, conv=f"{prefix}.conv2", bn=f"{prefix}.bn2")
    h = conv_bn(h, planes, out, 1, conv=f"{prefix}.conv3", bn=f"{prefix}.bn3", act=None)
    shortcut = x
    if stride != 1 or in_channels != out:
        shortcut = _downsample(x, in_channels, out, stride, prefix)
    return nn.ReLU()(h + shortcut)


BLOCKS: dict[str, Callable[[Tensor, int, int, int, str], Tensor]] = {
    "basic": basic_block, "bottleneck": bottleneck}


def resnet(depth: int, num_classes: int = 1000, *, in_channels: int = 3,
           input_size: int | Sequence[int] = 224, width: int = 64) -> Model:
    """ResNet-`depth` (18, 34, 50, 101 or 152). Parameter names as torchvision's
    state_dict: "conv1", "bn1", "layer<s>.<b>.conv1/bn1/...", "layer<s>.<b>.downsample.0/1",
    "fc". `width` is the base number of channels (64 in the paper; stage s has
    width * 2**(s-1) planes), e.g. width=8 for quick tests.

    Any input_size works (the head is a global average pooling; 224 is the design size);
    resnet18 has 11,689,512 parameters with 1000 classes."""
    if depth not in CONFIGS:
        raise ValueError(f"resnet: depth must be one of {sorted(CONFIGS)}, got {depth!r}")
    name = f"resnet{depth}"
    check_positive(name, "width", width)
    if not isinstance(width, int):
        raise ValueError(f"{name}: width must be an int, got {width!r}")
    kind, counts = CONFIGS[depth]
    block = BLOCKS[kind]
    x = image_input(name, num_classes, in_channels, input_size)
    h = conv_bn(x, in_channels, width, 7, 2, 3, conv="conv1", bn="bn1")
    h = nn.MaxPool2d(3, stride=2, padding=1, name="maxpool")(h)
    channels = width
    for stage, count in enumerate(counts):
        planes = width * 2 ** stage
        for index in range(count):
            stride = 2 if stage > 0 and index == 0 else 1
            h = block(h, channels, planes, stride, f"layer{stage + 1}.{index}")
            channels = planes * EXPANSION[kind]
    h = nn.AdaptiveAvgPool2d(1, name="avgpool")(h)
    logits = nn.Linear(channels, num_classes, name="fc")(nn.Flatten()(h))
    return Model(inputs=x, outputs=logits, name=name)


def resnet18(num_classes: int = 1000, **options) -> Model:
    """ResNet-18 (BasicBlock, 2-2-2-2); 11,689,512 parameters. Options: see resnet()."""
    return resnet(18, num_classes, **options)


def resnet34(num_classes: int = 1000, **options) -> Model:
    """ResNet-34 (BasicBlock, 3-4-6-3); 21,797,672 parameters. Options: see resnet()."""
    return resnet(34, num_classes, **options)


def resnet50(num_classes: int = 1000, **options) -> Model:
    """ResNet-50 (Bottleneck, 3-4-6-3); 25,557,032 parameters. Options: see resnet()."""
    return resnet(50, num_classes, **options)


def resnet101(num_classes: int = 1000, **options) -> Model:
    """ResNet-101 (Bottleneck, 3-4-23-3); 44,549,160 parameters. Options: see resnet()."""
    return resnet(101, num_classes, **options)


def resnet152(num_classes: int = 1000, **options) -> Model:
    """ResNet-152 (Bottleneck, 3-8-36-3); 60,192,808 parameters. Options: see resnet()."""
    return resnet(152, num_classes, **options)
