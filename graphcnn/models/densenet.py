"""DenseNet (Huang, Liu, van der Maaten and Weinberger, "Densely connected convolutional
networks", CVPR 2017), DenseNet-BC as torchvision.models.densenet*: bottleneck dense layers
(bn-relu-1x1 conv to bn_size * growth_rate, bn-relu-3x3 conv to growth_rate) and
transitions that halve the channels (compression 0.5) and the resolution."""
from __future__ import annotations

from typing import Any, Sequence

import graphcnn as gc
from graphcnn import nn
from graphcnn.dsl import Tensor
from graphcnn.model import Model
from graphcnn.models._blocks import image_input

# name -> (growth_rate, block_config, num_init_features)
CONFIGS: dict[str, tuple[int, tuple[int, ...], int]] = {
    "densenet121": (32, (6, 12, 24, 16), 64),
    "densenet161": (48, (6, 12, 36, 24), 96),
    "densenet169": (32, (6, 12, 32, 32), 64),
    "densenet201": (32, (6, 12, 48, 32), 64),
}


def _bn_relu_conv(x: Tensor, in_channels: int, out_channels: int, kernel_size: int,
                  prefix: str, index: str = "") -> Tensor:
    """"<prefix>.norm<index>" -> relu -> "<prefix>.conv<index>" (no bias)."""
    h = gc.relu(nn.BatchNorm2d(in_channels, name=f"{prefix}.norm{index}")(x))
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2,
                     bias=False, name=f"{prefix}.conv{index}")(h)


def dense_block(x: Tensor, in_channels: int, num_layers: int, growth_rate: int,
                bn_size: int, drop_rate: float, prefix: str) -> tuple[Tensor, int]:
    """Each layer sees the concatenation of the block input and every earlier layer's
    growth_rate new channels; returns that concatenation after the last layer."""
    features = [x]
    channels = in_channels
    for i in range(num_layers):
        layer = f"{prefix}.denselayer{i + 1}"
        h = features[0] if len(features) == 1 else gc.concat(features, axis=1)
        h = _bn_relu_conv(h, channels, bn_size * growth_rate, 1, layer, "1")
        h = _bn_relu_conv(h, bn_size * growth_rate, growth_rate, 3, layer, "2")
        if drop_rate > 0:
            h = nn.Dropout(drop_rate)(h)
        features.append(h)
        channels += growth_rate
    return gc.concat(features, axis=1), channels


def densenet(num_classes: int = 1000, *, growth_rate: int = 32,
             block_config: Sequence[int] = (6, 12, 24, 16), num_init_features: int = 64,
             bn_size: int = 4, drop_rate: float = 0.0, compression: float = 0.5,
             in_channels: int = 3, input_size: int | Sequence[int] = 224,
             name: str = "densenet") -> Model:
    """A DenseNet-BC. Parameter names as torchvision's state_dict: "features.conv0",
    "features.norm0", "features.denseblock<b>.denselayer<l>.norm1/conv1/norm2/conv2",
    "features.transition<b>.norm/conv", "features.norm5", "classifier".
    Any input_size of 32 or more works (global average pooling head)."""
    for key, value in (("growth_rate", growth_rate), ("num_init_features", num_init_features),
                       ("bn_size", bn_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: {key} must be an int >= 1, got {value!r}")
    if not block_config or any(not isinstance(n, int) or n < 1 for n in block_config):
        raise ValueError(f"{name}: block_config must be positive ints, got {block_config!r}")
    if not 0.0 < compression <= 1.0:
        raise ValueError(f"{name}: compression must be in (0, 1], got {compression!r}")
    x = image_input(name, num_classes, in_channels, input_size)
    h = nn.Conv2d(in_channels, num_init_features, 7, stride=2, padding=3, bias=False,
                  name="features.conv0")(x)
    h = gc.relu(nn.BatchNorm2d(num_init_features, name="features.norm0")(h))
    h = nn.MaxPool2d(3, stride=2, padding=1, name="features.pool0")(h)
    channels = num_init_features
    for b, num_layers in enumerate(block_config):
        h, channels = dense_block(h, channels, num_layers, growth_rate, bn_size, drop_rate,
                                  f"features.denseblock{b + 1}")
        if b != len(block_config) - 1:
            out = int(channels * compression)
            h = _bn_relu_conv(h, channels, out, 1, f"features.transition{b + 1}")
            h = nn.AvgPool2d(2, stride=2, name=f"features.transition{b + 1}.pool")(h)
            channels = out
    h = gc.relu(nn.BatchNorm2d(channels, name="features.norm5")(h))
    h = nn.AdaptiveAvgPool2d(1, name="avgpool")(h)
    logits = nn.Linear(channels, num_classes, name="classifier")(nn.Flatten()(h))
    return Model(inputs=x, outputs=logits, name=name)


def _preset(name: str, num_classes: int, options: dict[str, Any]) -> Model:
    growth_rate, block_config, num_init_features = CONFIGS[name]
    kwargs: dict[str, Any] = dict(growth_rate=growth_rate, block_config=block_config,
                  num_init_features=num_init_features, name=name)
    kwargs.update(options)
    return densenet(num_classes, **kwargs)


def densenet121(num_classes: int = 1000, **options) -> Model:
    """DenseNet-121 (growth 32, blocks 6-12-24-16, 64 initial features); 7,978,856
    parameters. Options: see densenet()."""
    return _preset("densenet121", num_classes, options)


def densenet161(num_classes: int = 1000, **options) -> Model:
    """DenseNet-161 (growth 48, blocks 6-12-36-24, 96 initial features); 28,681,000
    parameters. Options: see densenet()."""
    return _preset("densenet161", num_classes, options)


def densenet169(num_classes: int = 1000, **options) -> Model:
    """DenseNet-169 (growth 32, blocks 6-12-32-32); 14,149,480 parameters."""
    return _preset("densenet169", num_classes, options)


def densenet201(num_classes: int = 1000, **options) -> Model:
    """DenseNet-201 (growth 32, blocks 6-12-48-32); 20,013,928 parameters."""
    return _preset("densenet201", num_classes, options)
