"""PyTorch equivalents of zoo models, for the benchmark's torch peer (needs torch; no
torchvision): the same architecture and the same state_dict names as graphcnn's zoo (which
follows torchvision), so graphcnn's weights load into them by name and the outputs can be
cross-checked.

    >>> import graphcnn as gc
    >>> from graphcnn.bench.torch_models import build, load_graphcnn_weights
    >>> model = gc.models.lenet5()
    >>> net = load_graphcnn_weights(build("lenet5"), model)   # doctest: +SKIP

Each builder takes the zoo function's keyword options that change the architecture
(num_classes, in_channels, width / width_mult, and for the models in torch_models_big.py
VGG's hidden and DenseNet's growth_rate, block_config, ...). `input_size` does not change
any weight shape (the heads pool globally, or adaptively as the zoo's VGG), so it is
accepted and ignored. Peers: lenet5, resnet18/34/50/101/152, mobilenet_v2 here; vgg11-19
(and _bn), googlenet, densenet121/161/169/201 in graphcnn/bench/torch_models_big.py.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from graphcnn.bench.torch_models_big import BIG_BUILDERS

# ---- LeNet-5 --------------------------------------------------------------------------------

class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 5)
        self.s2 = nn.AvgPool2d(2)
        self.c3 = nn.Conv2d(6, 16, 5)
        self.s4 = nn.AvgPool2d(2)
        self.c5 = nn.Conv2d(16, 120, 5)
        self.f6 = nn.Linear(120, 84)
        self.f7 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.s2(torch.tanh(self.c1(x)))
        h = self.s4(torch.tanh(self.c3(h)))
        h = torch.tanh(self.c5(h)).flatten(1)
        return self.f7(torch.tanh(self.f6(h)))


# ---- ResNet (basic and bottleneck blocks) --------------------------------------------------

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(h + shortcut)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (carries the stride, "v1.5" as the zoo) -> 1x1 to 4 * planes, each
    with batch norm; a projection shortcut where the shape changes."""
    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out, 1, stride, bias=False),
                                            nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(h + shortcut)


class ResNet(nn.Module):
    # set in __init__ with setattr, one per stage
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self, counts: tuple[int, ...], num_classes: int = 1000, in_channels: int = 3,
                 width: int = 64, block: type[BasicBlock | Bottleneck] = BasicBlock) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        channels = width
        for stage, count in enumerate(counts):
            planes = width * 2 ** stage
            blocks = []
            for index in range(count):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(block(channels, planes, stride))
                channels = planes * block.expansion
            setattr(self, f"layer{stage + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        return self.fc(torch.flatten(self.avgpool(h), 1))


def resnet18(num_classes: int = 1000, in_channels: int = 3, width: int = 64,
             **_: Any) -> ResNet:
    return ResNet((2, 2, 2, 2), num_classes, in_channels, width)


def resnet34(num_classes: int = 1000, in_channels: int = 3, width: int = 64,
             **_: Any) -> ResNet:
    return ResNet((3, 4, 6, 3), num_classes, in_channels, width)


def resnet50(num_classes: int = 1000, in_channels: int = 3, width: int = 64,
             **_: Any) -> ResNet:
    return ResNet((3, 4, 6, 3), num_classes, in_channels, width, Bottleneck)


def resnet101(num_classes: int = 1000, in_channels: int = 3, width: int = 64,
              **_: Any) -> ResNet:
    return ResNet((3, 4, 23, 3), num_classes, in_channels, width, Bottleneck)


def resnet152(num_classes: int = 1000, in_channels: int = 3, width: int = 64,
              **_: Any) -> ResNet:
    return ResNet((3, 8, 36, 3), num_classes, in_channels, width, Bottleneck)


# ---- MobileNet v2 -----------------------------------------------------------------------------

def _conv_bn(in_c: int, out_c: int, k: int, stride: int = 1, groups: int = 1,
             act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(in_c, out_c, k, stride, (k - 1) // 2, groups=groups,
                                         bias=False), nn.BatchNorm2d(out_c)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, in_c: int, out_c: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(in_c * expand_ratio))
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn(in_c, hidden, 1))
        layers += [_conv_bn(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, out_c, 1, bias=False), nn.BatchNorm2d(out_c)]
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and in_c == out_c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, in_channels: int = 3,
                 dropout: float = 0.2, round_nearest: int = 8) -> None:
        super().__init__()
        from graphcnn.models.mobilenet_v2 import SETTINGS, make_divisible

        channels = make_divisible(32 * width_mult, round_nearest)
        last = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [_conv_bn(in_channels, channels, 3, 2)]
        for t, c, n, s in SETTINGS:
            out = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(InvertedResidual(channels, out, s if i == 0 else 1, t))
                channels = out
        features.append(_conv_bn(channels, last, 1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0, in_channels: int = 3,
                 dropout: float = 0.2, round_nearest: int = 8, **_: Any) -> MobileNetV2:
    return MobileNetV2(num_classes, width_mult, in_channels, dropout, round_nearest)


def lenet5(num_classes: int = 10, **_: Any) -> LeNet5:
    return LeNet5(num_classes)


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "lenet5": lenet5, "resnet18": resnet18, "resnet34": resnet34, "mobilenet_v2": mobilenet_v2,
    "resnet50": resnet50, "resnet101": resnet101, "resnet152": resnet152,
}
BUILDERS.update(BIG_BUILDERS)  # VGG, GoogLeNet, DenseNet: graphcnn/bench/torch_models_big.py


def build(name: str, **options: Any) -> nn.Module:
    """The torch model for zoo name `name`, built with the zoo function's options."""
    key = name.lower()
    if key not in BUILDERS:
        raise KeyError(f"no torch equivalent of {name!r} (have {sorted(BUILDERS)})")
    return BUILDERS[key](**options)


def load_graphcnn_weights(net: nn.Module, model: Any) -> nn.Module:
    """Copy `model`'s parameters (graphcnn, numpy) into `net` by state_dict name; every
    name must match both ways (num_batches_tracked aside). Returns `net`."""
    params = model.parameters()
    state = net.state_dict()
    wanted = {k for k in state if not k.endswith("num_batches_tracked")}
    missing, extra = wanted - set(params), set(params) - wanted
    if missing or extra:
        raise KeyError(f"state_dict names differ: torch only {sorted(missing)[:5]}, "
                       f"graphcnn only {sorted(extra)[:5]}")
    with torch.no_grad():
        for key in wanted:
            value = np.asarray(params[key])
            if tuple(state[key].shape) != value.shape:
                raise ValueError(f"{key}: torch shape {tuple(state[key].shape)}, graphcnn "
                                 f"{value.shape}")
            state[key].copy_(torch.from_numpy(np.ascontiguousarray(value, np.float32)))
    return net
