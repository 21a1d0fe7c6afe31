"""LeNet-5 (LeCun, Bottou, Bengio and Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 1998), with the usual modern simplifications: full c3
connectivity (the paper connects each c3 map to a subset of s2 maps), plain average
pooling (the paper's s2/s4 have a trainable coefficient and bias), a plain tanh (the
paper scales it, 1.7159 tanh(2x/3)), and a linear output layer in place of the RBF units,
trained with cross-entropy."""
from __future__ import annotations

from typing import Sequence

import graphcnn as gc
from graphcnn import nn
from graphcnn.model import Model
from graphcnn.models._blocks import image_input


def lenet5(num_classes: int = 10, *, in_channels: int = 1,
           input_size: int | Sequence[int] = 32) -> Model:
    """LeNet-5 for in_channels x 32 x 32 images; parameters 'c1.weight', 'c1.bias', ...,
    'f7.bias'.

    ::

        c1  Conv2d(1, 6, 5)    tanh   -> 6x28x28
        s2  AvgPool2d(2)              -> 6x14x14
        c3  Conv2d(6, 16, 5)   tanh   -> 16x10x10
        s4  AvgPool2d(2)              -> 16x5x5
        c5  Conv2d(16, 120, 5) tanh   -> 120x1x1, flattened to 120
        f6  Linear(120, 84)    tanh
        f7  Linear(84, num_classes)   (logits)

    61,706 parameters with 10 classes. Other input sizes (at least 32 x 32) work too: c5
    then leaves 120 x h x w features and f6 takes them all.
    """
    x = image_input("lenet5", num_classes, in_channels, input_size)
    height, width = x.type.shape[2:]
    after = [(size - 4) // 2 for size in (height, width)]         # c1, s2
    after = [(size - 4) // 2 - 4 for size in after]                # c3, s4, c5
    if min(after) < 1:
        raise ValueError(f"lenet5: input_size must be at least 32 x 32, got "
                         f"{height} x {width}")
    h = gc.tanh(nn.Conv2d(in_channels, 6, 5, name="c1")(x))
    h = nn.AvgPool2d(2, name="s2")(h)
    h = gc.tanh(nn.Conv2d(6, 16, 5, name="c3")(h))
    h = nn.AvgPool2d(2, name="s4")(h)
    h = gc.tanh(nn.Conv2d(16, 120, 5, name="c5")(h))
    h = gc.tanh(nn.Linear(120 * after[0] * after[1], 84, name="f6")(gc.flatten(h)))
    logits = nn.Linear(84, num_classes, name="f7")(h)
    return Model(inputs=x, outputs=logits, name="lenet5")
