"""A single-shot grid detector (YOLO-v1 style, one box per cell, with a background class
as SSD's): a small conv backbone brings the image down to an S x S grid, and two heads
read every cell.

::

    image (C_in, H, W)
    stem     Conv3x3(C_in, width, stride 2) BN ReLU                  -> H/2
    stage k  Conv3x3(stride 2) BN ReLU, Conv3x3 BN ReLU (k = 1, 2..)  -> H/4, H/8, ... S
             (channels width * 2^k, at most width * 8)
    neck     Conv3x3 BN ReLU
    scores   Conv1x1 -> num_classes + 1 channels, softmax over them  (N, 1 + C, S, S)
    boxes    Conv1x1 -> 4 channels (tx, ty, tw, th)                  (N, 4, S, S)

``scores[:, 0]`` is the probability that a cell holds no object's center, ``scores[:, 1 +
c]`` that it holds one of class c; ``boxes`` is the box of that object, encoded as
graphcnn.detection describes (``encode_targets`` builds the training targets from
ground-truth boxes, ``decode_predictions`` turns the outputs into boxes, scores and
classes after non-maximum suppression).
"""
from __future__ import annotations

import math

import graphcnn as gc
from graphcnn import nn
from graphcnn.dsl import Tensor
from graphcnn.model import Model
from graphcnn.models._blocks import conv_bn

_NAME = "yolo_grid_detector"


def _check(num_classes: int, in_channels: int, image_size: int, width: int,
           grid: int) -> int:
    """The number of stride-2 stages after the stem; errors name the bad argument."""
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels),
                        ("image_size", image_size), ("width", width), ("grid", grid)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{_NAME}: {name} must be an int >= 1, got {value!r}")
    ratio = image_size // grid
    if image_size % grid or ratio < 2 or ratio & (ratio - 1):
        raise ValueError(f"{_NAME}: image_size / grid must be a power of two >= 2 (the "
                         f"backbone halves the size at each stage), got {image_size} / "
                         f"{grid}")
    return int(math.log2(ratio)) - 1


def detector_features(x: Tensor, in_channels: int, width: int, stages: int) -> Tensor:
    """The backbone and neck: (N, in_channels, H, W) -> (N, channels, S, S), returning
    the features every head reads."""
    h = conv_bn(x, in_channels, width, 3, stride=2, conv="stem.conv", bn="stem.bn")
    c = width
    for k in range(1, stages + 1):
        out = width * min(2 ** k, 8)
        h = conv_bn(h, c, out, 3, stride=2, conv=f"stage{k}.conv1", bn=f"stage{k}.bn1")
        h = conv_bn(h, out, out, 3, conv=f"stage{k}.conv2", bn=f"stage{k}.bn2")
        c = out
    return conv_bn(h, c, c, 3, conv="neck.conv", bn="neck.bn")


def yolo_grid_detector(num_classes: int = 3, *, in_channels: int = 3, image_size: int = 64,
                       width: int = 16, grid: int = 8) -> Model:
    """The grid detector for ``in_channels x image_size x image_size`` images, with outputs
    ``{"scores": (N, 1 + num_classes, grid, grid) probabilities (channel 0: no object),
    "boxes": (N, 4, grid, grid)}`` (see the module docstring). ``image_size / grid`` must
    be a power of two >= 2 (the cell size in pixels, the backbone's stride).

    >>> import graphcnn as gc
    >>> m = gc.models.yolo_grid_detector(3, image_size=32, width=8, grid=4)
    >>> [tuple(t.type.shape) for t in m.outputs]
    [(1, 4, 4, 4), (1, 4, 4, 4)]
    """
    stages = _check(num_classes, in_channels, image_size, width, grid)
    x = gc.Input((in_channels, image_size, image_size), name="image")
    features = detector_features(x, in_channels, width, stages)
    channels = int(features.type.shape[1])
    logits = nn.Conv2d(channels, num_classes + 1, 1, name="head.scores")(features)
    boxes = nn.Conv2d(channels, 4, 1, name="head.boxes")(features)
    return Model(inputs=x, outputs={"scores": gc.softmax(logits, axis=1), "boxes": boxes},
                 name=_NAME)
