"""PyTorch equivalents of the larger zoo models (VGG with and without batch norm,
GoogLeNet, DenseNet-BC) for the benchmark's torch peer; graphcnn/bench/torch_models.py
registers them into its BUILDERS. Written against graphcnn's zoo definitions
(graphcnn/models/vgg.py, googlenet.py, densenet.py): the same layers, paddings, ceil modes
and poolings, and the same state_dict names, so graphcnn's weights load by name.

Each builder takes the zoo function's options that change the architecture; `input_size`
changes no weight shape (VGG's AdaptiveAvgPool2d((7, 7)) equals the zoo's pooling wherever
the zoo builds) and is accepted and ignored.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

# ---- VGG ------------------------------------------------------------------------------------


class VGG(nn.Module):
    """features (3x3 convs with bias, optional batch norm, relu, 2x2 max pools) ->
    AdaptiveAvgPool2d((7, 7)) -> classifier (Linear, ReLU, Dropout) x 2 -> Linear."""

    def __init__(self, depth: int, num_classes: int = 1000, batch_norm: bool = False,
                 in_channels: int = 3, width_mult: float = 1.0, hidden: int = 4096,
                 dropout: float = 0.5) -> None:
        super().__init__()
        from graphcnn.models.vgg import CONFIGS

        layers: list[nn.Module] = []
        channels = in_channels
        for item in CONFIGS[depth]:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            # the zoo's channel rule: int(c * width_mult), at least one
            out = max(1, int(int(item) * width_mult))
            layers.append(nn.Conv2d(channels, out, 3, padding=1))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU(inplace=True))
            channels = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 49, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _vgg_builder(depth: int, batch_norm: bool) -> Callable[..., nn.Module]:
    def builder(num_classes: int = 1000, in_channels: int = 3, width_mult: float = 1.0,
                hidden: int = 4096, dropout: float = 0.5, **_: Any) -> VGG:
        return VGG(depth, num_classes, batch_norm, in_channels, width_mult, hidden, dropout)

    builder.__name__ = builder.__qualname__ = f"vgg{depth}" + ("_bn" if batch_norm else "")
    return builder


# ---- GoogLeNet ------------------------------------------------------------------------------


class ConvBN(nn.Module):
    """conv (no bias) -> batch norm (eps 0.001, as the zoo's GoogLeNet) -> relu, with the
    zoo's names "<prefix>.conv" and "<prefix>.bn"."""

    def __init__(self, in_c: int, out_c: int, k: int, stride: int = 1,
                 padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_c, out_c, k, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_c, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class Inception(nn.Module):
    """1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 (the "5x5" branch uses a 3x3, as the zoo) |
    3x3 max pool (stride 1, pad 1, ceil mode) -> 1x1; concatenated in that order."""

    def __init__(self, in_c: int, c1: int, c3r: int, c3: int, c5r: int, c5: int,
                 pool_proj: int) -> None:
        super().__init__()
        self.branch1 = ConvBN(in_c, c1, 1)
        self.branch2 = nn.Sequential(ConvBN(in_c, c3r, 1), ConvBN(c3r, c3, 3, padding=1))
        self.branch3 = nn.Sequential(ConvBN(in_c, c5r, 1), ConvBN(c5r, c5, 3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True),
                                     ConvBN(in_c, pool_proj, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x),
                          self.branch4(x)], 1)


class GoogLeNet(nn.Module):
    """The zoo's GoogLeNet: no auxiliary classifiers (the zoo has none) and no input
    transform; max pools in ceil mode; global average pooling, dropout, fc."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3,
                 dropout: float = 0.2) -> None:
        super().__init__()
        from graphcnn.models.googlenet import INCEPTIONS

        self.conv1 = ConvBN(in_channels, 64, 7, 2, 3)
        self.maxpool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = ConvBN(64, 64, 1)
        self.conv3 = ConvBN(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        # the pools between stages sit before inception4a and inception5a
        pools = {"inception4a": nn.MaxPool2d(3, 2, ceil_mode=True),
                 "inception5a": nn.MaxPool2d(2, 2, ceil_mode=True)}
        self.order: list[str] = []
        for name, spec in INCEPTIONS.items():
            if name in pools:
                pool = f"maxpool{3 if name == 'inception4a' else 4}"
                self.add_module(pool, pools[name])
                self.order.append(pool)
            self.add_module(name, Inception(*spec))
            self.order.append(name)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.maxpool1(self.conv1(x))
        h = self.maxpool2(self.conv3(self.conv2(h)))
        for name in self.order:
            h = getattr(self, name)(h)
        return self.fc(self.dropout(torch.flatten(self.avgpool(h), 1)))


def googlenet(num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.2,
              **_: Any) -> GoogLeNet:
    return GoogLeNet(num_classes, in_channels, dropout)


# ---- DenseNet-BC ----------------------------------------------------------------------------


class DenseLayer(nn.Module):
    """norm1 -> relu -> conv1 (1x1 to bn_size * growth) -> norm2 -> relu -> conv2 (3x3 to
    growth), then dropout where drop_rate > 0; takes the concatenation of what came
    before in its block."""

    def __init__(self, in_c: int, growth_rate: int, bn_size: int, drop_rate: float) -> None:
        super().__init__()
        mid = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(in_c)
        self.conv1 = nn.Conv2d(in_c, mid, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, growth_rate, 3, padding=1, bias=False)
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(torch.relu(self.norm1(x)))
        return self.drop(self.conv2(torch.relu(self.norm2(h))))


class DenseBlock(nn.Module):
    def __init__(self, in_c: int, num_layers: int, growth_rate: int, bn_size: int,
                 drop_rate: float) -> None:
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}",
                            DenseLayer(in_c + i * growth_rate, growth_rate, bn_size, drop_rate))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.children():
            features.append(layer(torch.cat(features, 1) if len(features) > 1 else x))
        return torch.cat(features, 1)


class Transition(nn.Module):
    """norm -> relu -> 1x1 conv (compression) -> 2x2 average pool, stride 2."""

    def __init__(self, in_c: int, out_c: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_c)
        self.conv = nn.Conv2d(in_c, out_c, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.conv(torch.relu(self.norm(x))))


class DenseNet(nn.Module):
    """features: conv0 (7x7/2) -> norm0 -> relu -> pool0 (3x3/2, pad 1) -> dense blocks
    with transitions between them -> norm5; then relu, global average pool, classifier."""

    def __init__(self, num_classes: int = 1000, growth_rate: int = 32,
                 block_config: Sequence[int] = (6, 12, 24, 16), num_init_features: int = 64,
                 bn_size: int = 4, drop_rate: float = 0.0, compression: float = 0.5,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(in_channels, num_init_features, 7, 2, 3,
                                                    bias=False))
        self.features.add_module("norm0", nn.BatchNorm2d(num_init_features))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        self.features.add_module("pool0", nn.MaxPool2d(3, 2, 1))
        channels = num_init_features
        for b, num_layers in enumerate(block_config):
            self.features.add_module(f"denseblock{b + 1}", DenseBlock(
                channels, num_layers, growth_rate, bn_size, drop_rate))
            channels += num_layers * growth_rate
            if b != len(block_config) - 1:
                out = int(channels * compression)   # the zoo's rounding (down)
                self.features.add_module(f"transition{b + 1}", Transition(channels, out))
                channels = out
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.features(x))
        return self.classifier(torch.flatten(self.avgpool(h), 1))


def _densenet_builder(name: str) -> Callable[..., nn.Module]:
    def builder(num_classes: int = 1000, **options: Any) -> DenseNet:
        from graphcnn.models.densenet import CONFIGS

        growth_rate, block_config, num_init_features = CONFIGS[name]
        kwargs: dict[str, Any] = dict(growth_rate=growth_rate, block_config=block_config,
                                      num_init_features=num_init_features)
        kwargs.update(options)
        for ignored in ("input_size", "name"):   # change no weight
            kwargs.pop(ignored, None)
        return DenseNet(num_classes, **kwargs)

    builder.__name__ = builder.__qualname__ = name
    return builder


BIG_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    **{f"vgg{d}{'_bn' if bn else ''}": _vgg_builder(d, bn)
       for bn in (False, True) for d in (11, 13, 16, 19)},
    "googlenet": googlenet,
    **{name: _densenet_builder(name)
       for name in ("densenet121", "densenet161", "densenet169", "densenet201")},
}
