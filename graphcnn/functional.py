"""Functional forms of the ops, on symbolic tensors: `gc.relu(x)`, `gc.concat([a, b])`."""
from __future__ import annotations

from typing import Sequence

from graphcnn.arguments import check_int, check_ints, check_number
from graphcnn.dsl import Tensor, apply

_ANY_INT = -(2**31)   # axes may count from the end


def relu(x: Tensor) -> Tensor:
    return apply("relu", [x])


def relu6(x: Tensor) -> Tensor:
    return apply("clip", [x], low=0.0, high=6.0)


def clip(x: Tensor, low: float, high: float) -> Tensor:
    return apply("clip", [x], low=check_number("low", low, owner="clip"),
                 high=check_number("high", high, owner="clip"))


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    return apply("leaky_relu", [x],
                 alpha=check_number("negative_slope", negative_slope, owner="leaky_relu"))


def sigmoid(x: Tensor) -> Tensor:
    return apply("sigmoid", [x])


def tanh(x: Tensor) -> Tensor:
    return apply("tanh", [x])


def softmax(x: Tensor, axis: int = 1) -> Tensor:
    return apply("softmax", [x], axis=check_int("axis", axis, _ANY_INT, owner="softmax"))


def log_softmax(x: Tensor, axis: int = 1) -> Tensor:
    return apply("log_softmax", [x],
                 axis=check_int("axis", axis, _ANY_INT, owner="log_softmax"))


def add(a: Tensor, b: Tensor) -> Tensor:
    return apply("add", [a, b])


def sub(a: Tensor, b: Tensor) -> Tensor:
    return apply("sub", [a, b])


def mul(a: Tensor, b: Tensor) -> Tensor:
    return apply("mul", [a, b])


def flatten(x: Tensor, start_dim: int = 1) -> Tensor:
    return apply("flatten", [x], start_dim=check_int("start_dim", start_dim, _ANY_INT,
                                                     owner="flatten"))


def reshape(x: Tensor, shape: Sequence[int]) -> Tensor:
    """Reshape each sample to `shape` (the batch dimension is kept); -1 infers one size."""
    return apply("reshape", [x], shape=(0,) + tuple(shape))


def concat(tensors: Sequence[Tensor], axis: int = 1) -> Tensor:
    return apply("concat", list(tensors), axis=axis)


def pad2d(x: Tensor, padding: int | Sequence[int], value: float = 0.0) -> Tensor:
    """Pad the last two axes; `padding` is an int or (left, right, top, bottom) as in
    torch.nn.ZeroPad2d."""
    left, right, top, bottom = check_ints("padding", padding, (4,), minimum=0, owner="pad2d")
    pads = ((0, 0),) * (x.type.ndim - 2) + ((top, bottom), (left, right))
    return apply("pad", [x], pads=pads, value=check_number("value", value, owner="pad2d"))
