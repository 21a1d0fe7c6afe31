"""VGG (Simonyan and Zisserman, "Very deep convolutional networks for large-scale image
recognition", ICLR 2015), configurations A (vgg11), B (vgg13), D (vgg16) and E (vgg19),
with and without batch normalization, as torchvision.models.vgg*."""
from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

from graphcnn import nn
from graphcnn.model import Model
from graphcnn.models._blocks import adaptive_avg_pool, check_positive, image_input
from graphcnn.nn.module import Layer

# Output channels of each 3x3 conv; "M" is a 2x2 max pooling.
CONFIGS: dict[int, list[int | str]] = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


def vgg(depth: int, num_classes: int = 1000, *, batch_norm: bool = False,
        in_channels: int = 3, input_size: int | Sequence[int] = 224,
        width_mult: float = 1.0, hidden: int = 4096, dropout: float = 0.5) -> Model:
    """VGG-`depth` (11, 13, 16 or 19). Parameter names as torchvision's state_dict:
    "features.<i>.weight" (with batch_norm the BatchNorm2d follows each conv at i + 1),
    "classifier.0/3/6.weight".

    width_mult scales the conv channels (int(c * width_mult), at least 1) and `hidden` is
    the width of the two hidden fully-connected layers; with the defaults the counts are
    torchvision's (vgg16: 138,357,544). The features end in a 7x7 map at input_size 224;
    torchvision's AdaptiveAvgPool2d((7, 7)) is supported where 7x7 divides that map."""
    if depth not in CONFIGS:
        raise ValueError(f"vgg: depth must be one of {sorted(CONFIGS)}, got {depth!r}")
    name = f"vgg{depth}" + ("_bn" if batch_norm else "")
    check_positive(name, "width_mult", width_mult)
    x = image_input(name, num_classes, in_channels, input_size)
    layers: list[Layer] = []
    channels = in_channels
    for item in CONFIGS[depth]:
        if item == "M":
            layers.append(nn.MaxPool2d(2, stride=2))
            continue
        out = max(1, int(int(item) * width_mult))
        layers.append(nn.Conv2d(channels, out, 3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.ReLU())
        channels = out
    h = nn.Sequential(*layers, name="features")(x)
    h = adaptive_avg_pool(h, (7, 7), name)
    classifier = nn.Sequential(
        nn.Linear(channels * 7 * 7, hidden), nn.ReLU(), nn.Dropout(dropout),   # 0, 1, 2
        nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),             # 3, 4, 5
        nn.Linear(hidden, num_classes),                                        # 6
        name="classifier")
    return Model(inputs=x, outputs=classifier(nn.Flatten()(h)), name=name)


def _variant(depth: int, batch_norm: bool) -> Callable[..., Model]:
    fn = partial(vgg, depth, batch_norm=batch_norm)

    def build(num_classes: int = 1000, **options) -> Model:
        return fn(num_classes, **options)

    build.__name__ = build.__qualname__ = f"vgg{depth}" + ("_bn" if batch_norm else "")
    build.__doc__ = (f"VGG-{depth}{' with batch normalization' if batch_norm else ''}, as "
                     f"torchvision.models.{build.__name__}; options as graphcnn.models.vgg.vgg.")
    return build


vgg11 = _variant(11, False)
vgg13 = _variant(13, False)
vgg16 = _variant(16, False)
vgg19 = _variant(19, False)
vgg11_bn = _variant(11, True)
vgg13_bn = _variant(13, True)
vgg16_bn = _variant(16, True)
vgg19_bn = _variant(19, True)
