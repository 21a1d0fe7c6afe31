"""Layers, as in torch.nn."""
from graphcnn.nn.activations import ELU, GELU, SELU, Mish, Softplus, Softsign
from graphcnn.nn.conv1d import AvgPool1d, Conv1d, ConvTranspose1d, MaxPool1d
from graphcnn.nn.conv_transpose import ConvTranspose2d
from graphcnn.nn.layers import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Flatten,
    GlobalAvgPool2d,
    Identity,
    LeakyReLU,
    Linear,
    LogSoftmax,
    MaxPool2d,
    ReLU,
    ReLU6,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
    ZeroPad2d,
)
from graphcnn.nn.module import Layer
from graphcnn.nn.rearrange import (
    GroupNorm,
    InstanceNorm2d,
    LocalResponseNorm,
    PixelShuffle,
    PixelUnshuffle,
    ReflectionPad2d,
    ReplicationPad2d,
)
from graphcnn.nn.resample import Dropout2d, Upsample

__all__ = ["AdaptiveAvgPool2d", "AvgPool1d", "AvgPool2d", "Conv1d", "ConvTranspose1d",
           "MaxPool1d", "BatchNorm1d", "BatchNorm2d", "Conv2d",
           "ConvTranspose2d", "Dropout", "Dropout2d", "Flatten", "GlobalAvgPool2d", "Identity",
           "Layer", "LeakyReLU", "Linear", "LogSoftmax", "MaxPool2d", "ReLU", "ReLU6", "Sequential",
           "Sigmoid", "Softmax", "Tanh", "Upsample", "ZeroPad2d",
           "ELU", "GELU", "Mish", "SELU", "Softplus", "Softsign",
           # normalizations and rearrangements (graphcnn/nn/rearrange.py)
           "GroupNorm", "InstanceNorm2d", "LocalResponseNorm", "PixelShuffle",
           "PixelUnshuffle", "ReflectionPad2d", "ReplicationPad2d"]
