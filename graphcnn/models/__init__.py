"""The model zoo: functions returning a fresh Model (parameters drawn from graphcnn's
seeded generator, see gc.manual_seed).

    >>> import graphcnn as gc
    >>> gc.models.get_model("lenet5").num_parameters()
    61706
"""
from __future__ import annotations

from typing import Any, Callable

from graphcnn.model import Model
from graphcnn.models.alexnet import alexnet
from graphcnn.models.dcgan import dcgan_discriminator, dcgan_generator
from graphcnn.models.densenet import densenet121, densenet161, densenet169, densenet201
from graphcnn.models.detector import yolo_grid_detector
from graphcnn.models.googlenet import googlenet
from graphcnn.models.lenet5 import lenet5
from graphcnn.models.mobilenet_v1 import mobilenet_v1
from graphcnn.models.mobilenet_v2 import mobilenet_v2
from graphcnn.models.regressor import cnn_regressor
from graphcnn.models.resnet import resnet18, resnet34, resnet50, resnet101, resnet152
from graphcnn.models.unet import unet
from graphcnn.models.vgg import vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn

# name -> constructor; the CLI resolves model names here. Each takes num_classes first
# and keyword options (in_channels, input_size, width multipliers: see each function).
# The torchvision architectures name their parameters as torchvision's state_dict keys.
ZOO: dict[str, Callable[..., Model]] = {
    "lenet5": lenet5,
    "alexnet": alexnet,
    "vgg11": vgg11, "vgg13": vgg13, "vgg16": vgg16, "vgg19": vgg19,
    "vgg11_bn": vgg11_bn, "vgg13_bn": vgg13_bn, "vgg16_bn": vgg16_bn, "vgg19_bn": vgg19_bn,
    "resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50,
    "resnet101": resnet101, "resnet152": resnet152,
    "googlenet": googlenet,
    "densenet121": densenet121, "densenet161": densenet161, "densenet169": densenet169,
    "densenet201": densenet201,
    "mobilenet_v1": mobilenet_v1,
    "mobilenet_v2": mobilenet_v2,
    "unet": unet,
    "yolo_grid_detector": yolo_grid_detector,
    "cnn_regressor": cnn_regressor,
    "dcgan_generator": dcgan_generator,
    "dcgan_discriminator": dcgan_discriminator,
}


def get_model(name: str, **kwargs: Any) -> Model:
    """Build the zoo model called `name` (case-insensitive) with the given arguments."""
    key = name.lower()
    if key not in ZOO:
        raise ValueError(f"unknown model {name!r}; the zoo has {sorted(ZOO)}")
    return ZOO[key](**kwargs)


def available_models() -> list[str]:
    return sorted(ZOO)


__all__ = ["ZOO", "alexnet", "available_models", "cnn_regressor", "dcgan_discriminator",
           "dcgan_generator", "densenet121", "densenet161", "densenet169",
           "densenet201", "get_model", "googlenet", "lenet5", "mobilenet_v1",
           "mobilenet_v2", "resnet101", "resnet152", "resnet18", "resnet34", "resnet50",
           "unet", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn",
           "vgg19", "vgg19_bn", "yolo_grid_detector"]
