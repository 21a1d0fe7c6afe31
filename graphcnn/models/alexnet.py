"""AlexNet (Krizhevsky, Sutskever and Hinton, "ImageNet classification with deep
convolutional neural networks", NeurIPS 2012), as torchvision.models.alexnet: the
single-tower variant of "One weird trick..." (Krizhevsky 2014), 64-192-384-256-256 filters."""
from __future__ import annotations

from typing import Sequence

from graphcnn import nn
from graphcnn.model import Model
from graphcnn.models._blocks import adaptive_avg_pool, image_input


def alexnet(num_classes: int = 1000, *, in_channels: int = 3,
            input_size: int | Sequence[int] = 224, dropout: float = 0.5) -> Model:
    """AlexNet; parameter names as torchvision's state_dict ("features.0.weight", ...,
    "classifier.6.bias"). 61,100,840 parameters with 1000 classes.

    The features end in a 6x6 map at input_size 224 (223 to 254 as well);
    torchvision's AdaptiveAvgPool2d((6, 6)) is supported where 6x6 divides that map
    (e.g. 12x12 at 415 to 446) and is an error otherwise: see
    graphcnn.models._blocks.adaptive_avg_pool."""
    x = image_input("alexnet", num_classes, in_channels, input_size)
    features = nn.Sequential(
        nn.Conv2d(in_channels, 64, 11, stride=4, padding=2), nn.ReLU(),   # 0, 1
        nn.MaxPool2d(3, stride=2),                                        # 2
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),                      # 3, 4
        nn.MaxPool2d(3, stride=2),                                        # 5
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),                     # 6, 7
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),                     # 8, 9
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),                     # 10, 11
        nn.MaxPool2d(3, stride=2),                                        # 12
        name="features")
    h = adaptive_avg_pool(features(x), (6, 6), "alexnet")
    classifier = nn.Sequential(
        nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(),     # 0, 1, 2
        nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(),            # 3, 4, 5
        nn.Linear(4096, num_classes),                                     # 6
        name="classifier")
    return Model(inputs=x, outputs=classifier(nn.Flatten()(h)), name="alexnet")
