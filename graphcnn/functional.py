"""Functional forms of the ops, on symbolic tensors: `gc.relu(x)`, `gc.concat([a, b])`."""
from __future__ import annotations

from typing import Sequence

from graphcnn.arguments import check_int, check_ints, check_number
from graphcnn.dsl import Tensor, apply, constant

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


# ---- unary math and the smooth activations (graphcnn/ops/activations.py) -------------

def exp(x: Tensor) -> Tensor:
    return apply("exp", [x])


def log(x: Tensor) -> Tensor:
    return apply("log", [x])


def sqrt(x: Tensor) -> Tensor:
    return apply("sqrt", [x])


def abs(x: Tensor) -> Tensor:   # gc.abs, as torch.abs (the builtin is not used here)
    return apply("abs", [x])


def neg(x: Tensor) -> Tensor:
    return apply("neg", [x])


def reciprocal(x: Tensor) -> Tensor:
    return apply("reciprocal", [x])


def erf(x: Tensor) -> Tensor:
    return apply("erf", [x])


def pow(x: Tensor, exponent: "Tensor | float") -> Tensor:   # gc.pow, as torch.pow
    """x ** exponent, broadcasting; a number exponent becomes a constant."""
    if not isinstance(exponent, Tensor):
        exponent = constant(check_number("exponent", exponent, owner="pow"))
    return apply("pow", [x, exponent])


def maximum(a: Tensor, b: Tensor) -> Tensor:
    """The elementwise maximum, broadcasting; NaN if either is NaN (torch.maximum)."""
    return apply("maximum", [a, b])


def minimum(a: Tensor, b: Tensor) -> Tensor:
    return apply("minimum", [a, b])


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    return apply("elu", [x], alpha=check_number("alpha", alpha, owner="elu"), scale=1.0)


def selu(x: Tensor) -> Tensor:
    from graphcnn.ops.activations import SELU_ALPHA, SELU_SCALE
    return apply("elu", [x], alpha=SELU_ALPHA, scale=SELU_SCALE)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x); approximate='tanh' is the tanh form, as torch.nn.functional.gelu."""
    if approximate not in ("none", "tanh"):
        from graphcnn.dsl import user_location
        from graphcnn.errors import ArgumentError
        raise ArgumentError(f"gelu: approximate must be 'none' or 'tanh', got "
                            f"{approximate!r} (at {user_location()})")
    return apply("gelu" if approximate == "none" else "gelu_tanh", [x])


def mish(x: Tensor) -> Tensor:
    return apply("mish", [x])


def softplus(x: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, and x where beta x > threshold (torch's)."""
    return apply("softplus", [x],
                 beta=check_number("beta", beta, 0.0, low_open=True, owner="softplus"),
                 threshold=check_number("threshold", threshold, owner="softplus"))


def softsign(x: Tensor) -> Tensor:
    return apply("softsign", [x])
