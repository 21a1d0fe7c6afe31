"""A small CNN regressor: conv + batch norm + ReLU stages that halve the image, global
average pooling, and a linear head with no activation (the outputs are unbounded real
numbers, trained with a regression loss such as ``"mse"``).

    >>> import graphcnn as gc
    >>> model = gc.models.cnn_regressor(2, input_size=32, width=4)
    >>> model.outputs[0].type.shape
    (1, 2)
"""
from __future__ import annotations

from typing import Sequence

import graphcnn as gc
from graphcnn import nn
from graphcnn.model import Model
from graphcnn.models._blocks import conv_bn, image_input


def stage_widths(width: int, stages: int) -> list[int]:
    """The channels of each stage: `width`, doubled at each stage up to 4 * width (the
    later stages see fewer pixels, so more channels cost about the same)."""
    return [width * 2 ** min(i, 2) for i in range(stages)]


def cnn_regressor(num_outputs: int = 2, *, in_channels: int = 3,
                  input_size: int | Sequence[int] = 64, width: int = 16, stages: int = 4,
                  convs_per_stage: int = 2) -> Model:
    """A CNN mapping (in_channels, H, W) images to `num_outputs` real numbers.

    ::

        stage s (s = 1..stages), channels c_s = width * 2**min(s - 1, 2):
          conv3x3 stride 2 -> BN -> ReLU            "stage<s>.conv1", "stage<s>.bn1"
          (convs_per_stage - 1) x conv3x3 -> BN -> ReLU   "stage<s>.conv2", ...
        global average pooling                      -> c_stages
        Linear(c_stages, num_outputs)               "head"  (no activation)

    Every conv is 3x3 with padding 1 and no bias (the batch norm's shift replaces it).
    Each stage halves the height and width (rounding up), so the receptive field grows
    quickly while the cost stays small; global average pooling makes the features a
    per-image summary, which suits targets such as "how many" or "how much". With the
    defaults (3 channels, 2 outputs): 146,418 trainable parameters.
    """
    if not isinstance(num_outputs, int) or isinstance(num_outputs, bool) or num_outputs < 1:
        raise ValueError(f"cnn_regressor: num_outputs must be an int >= 1, got {num_outputs!r}")
    for name, value in (("width", width), ("stages", stages),
                        ("convs_per_stage", convs_per_stage)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"cnn_regressor: {name} must be an int >= 1, got {value!r}")
    x = image_input("cnn_regressor", num_outputs, in_channels, input_size)
    height, width_px = (int(d) for d in x.type.shape[2:])
    if min(height, width_px) < 2 ** stages:
        raise ValueError(f"cnn_regressor: {stages} stages halve the image {stages} times; "
                         f"input_size must be at least {2 ** stages} x {2 ** stages}, got "
                         f"{height} x {width_px}")
    h, channels = x, in_channels
    for s, out in enumerate(stage_widths(width, stages), start=1):
        for c in range(1, convs_per_stage + 1):
            h = conv_bn(h, channels, out, 3, stride=2 if c == 1 else 1,
                        conv=f"stage{s}.conv{c}", bn=f"stage{s}.bn{c}")
            channels = out
    h = gc.flatten(nn.AdaptiveAvgPool2d(1, name="pool")(h))
    y = nn.Linear(channels, num_outputs, name="head")(h)
    return Model(inputs=x, outputs=y, name="cnn_regressor")
