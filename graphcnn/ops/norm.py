"""Normalization and regularization: batch norm (inference with running statistics, and
training with batch statistics) and dropout.

Batch norm normalizes over every axis but the channel axis 1: x is (N, C, ...) — NCHW or
(N, C) — and its parameters are (C,). `batch_norm_train` returns the batch mean and the
biased batch variance as extra outputs; graphcnn.mode_rules blends them into the running
statistics (PyTorch's convention).

Dropout draws its mask from a counter-based hash (splitmix64) of (seed, salt, flat index),
so the NumPy reference and every backend produce the identical mask without sharing any
random-number state, and the backward pass recomputes the mask instead of storing it.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.errors import ShapeError
from graphcnn.ir.types import TensorType
from graphcnn.ops.elementwise import clip_grad_of_output, clip_ref, relu_ref
from graphcnn.ops.registry import Attr, FusionKind, expect_float, no_second_order, register_op


def _non_negative(name: str):
    def convert(value: Any) -> float:
        value = float(value)
        if not value >= 0:
            raise ShapeError(f"{name} must be >= 0, got {value}")
        return value
    return convert


_eps = Attr(1e-5, convert=_non_negative("eps"))


def _check_channels(x: TensorType, params: list[TensorType], names: tuple[str, ...]) -> int:
    expect_float(x, "input")
    if x.ndim < 2:
        raise ShapeError(f"batch norm input must be (N, C, ...) with at least 2 axes, "
                         f"got shape {x.shape}")
    channels = x.shape[1]
    for t, name in zip(params, names):
        if t.shape != (channels,) or t.dtype != x.dtype:
            raise ShapeError(f"{name} must be {x.dtype} of shape ({channels},) for an input "
                             f"with {channels} channels (shape {x.shape}), got {t}")
    return channels


def channel_shape(x: np.ndarray) -> tuple[int, ...]:
    """Shape that broadcasts a (C,) vector along axis 1 of x: (1, C, 1, ...)."""
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _reduce_axes(ndim: int) -> tuple[int, ...]:
    return (0,) + tuple(range(2, ndim))


def _channel_sum(graph: Any, v: Any, channels: int) -> Any:
    """Sum a (N, C, ...) value over every axis but 1, as a (C,) value."""
    if v.type.ndim == 2:
        return graph.add("sum_to", [v], shape=(channels,))
    keep = (1, channels) + (1,) * (v.type.ndim - 2)
    return graph.add("reshape", [graph.add("sum_to", [v], shape=keep)], shape=(channels,))


def _as_channels(graph: Any, v: Any, ndim: int) -> Any:
    """A (C,) value reshaped to (1, C, 1, ...) so it broadcasts along axis 1."""
    keep = (1, v.shape[0]) + (1,) * (ndim - 2)
    return graph.add("reshape", [v], shape=keep)


def _const(graph: Any, value: Any, dtype: str) -> Any:
    return graph.constant(np.asarray(value, dtype=dtype))


# ---- batch_norm (inference) -----------------------------------------------------------

_BN_PARAMS = ("weight", "bias", "running_mean", "running_var")


def batch_norm_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    _check_channels(in_types[0], in_types[1:], _BN_PARAMS)
    return in_types[0]


def batch_norm_ref(x: np.ndarray, weight: np.ndarray, bias: np.ndarray,
                   running_mean: np.ndarray, running_var: np.ndarray, eps: float,
                   momentum: float) -> np.ndarray:
    c = channel_shape(x)
    as64 = lambda a: a.astype(np.float64).reshape(c)  # noqa: E731
    scale = as64(weight) / np.sqrt(as64(running_var) + eps)
    return ((x.astype(np.float64) - as64(running_mean)) * scale + as64(bias)).astype(x.dtype)


def batch_norm_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    # y = xhat * w + b with xhat = (x - rm) / sqrt(rv + eps), so
    # dx = dy * w / sqrt(rv + eps)  (itself a batch_norm of dy with zero mean and bias),
    # dw = sum(dy * xhat), db = sum(dy); the running statistics are state, not trained.
    dy = cot[0]
    x, weight, _, running_mean, running_var = node.inputs
    eps, momentum = node.attrs["eps"], node.attrs["momentum"]
    channels = x.shape[1]
    zeros = _const(graph, np.zeros(channels), x.dtype)
    ones = _const(graph, np.ones(channels), x.dtype)
    dx = graph.add("batch_norm", [dy, weight, zeros, zeros, running_var], eps=eps,
                   momentum=momentum)
    xhat = graph.add("batch_norm", [x, ones, zeros, running_mean, running_var], eps=eps,
                     momentum=momentum)
    dweight = _channel_sum(graph, graph.add("mul", [dy, xhat]), channels)
    dbias = _channel_sum(graph, dy, channels)
    return [dx, dweight, dbias, None, None]


register_op("batch_norm", inputs=("x", "weight", "bias", "running_mean", "running_var"),
            shape=batch_norm_shape, ref=batch_norm_ref, vjp=batch_norm_vjp,
            kind=FusionKind.BROADCAST,
            attrs={"eps": _eps, "momentum": Attr(0.1, convert=float)},
            doc="Inference batch norm: (x - running_mean) / sqrt(running_var + eps) * weight "
                "+ bias, per channel (axis 1). momentum is used only by training lowering.")


# ---- batch_norm_train -----------------------------------------------------------------

def batch_norm_train_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    x = in_types[0]
    channels = _check_channels(x, in_types[1:], ("weight", "bias"))
    if channels and x.size // channels == 1:
        # The batch variance of one value is 0: the output would be the bias alone and
        # the gradient 0. PyTorch refuses it in training with this message; shapes are
        # static here, so it is found when the training graph is built.
        raise ShapeError(f"Expected more than 1 value per channel when training, got input "
                         f"size {list(x.shape)} (batch norm in training needs a batch "
                         f"size or spatial size above 1)")
    stat = TensorType((channels,), x.dtype)
    return [x, stat, stat]


def batch_statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and biased variance, in float64."""
    x64 = x.astype(np.float64)
    axes = _reduce_axes(x.ndim)
    mean = x64.mean(axis=axes)
    var = ((x64 - mean.reshape(channel_shape(x))) ** 2).mean(axis=axes)
    return mean, var


def batch_norm_train_ref(x: np.ndarray, weight: np.ndarray, bias: np.ndarray,
                         eps: float, activation: str = "", low: float = 0.0,
                         high: float = 0.0) -> list[np.ndarray]:
    mean, var = batch_statistics(x)
    c = channel_shape(x)
    xhat = (x.astype(np.float64) - mean.reshape(c)) / np.sqrt(var.reshape(c) + eps)
    y = xhat * weight.astype(np.float64).reshape(c) + bias.astype(np.float64).reshape(c)
    y = y.astype(x.dtype)
    # The activation applies to the rounded y, as the relu or clip op after an unfused
    # batch norm would: fusing them changes no bit.
    if activation == "relu":
        y = relu_ref(y)
    elif activation == "clip":
        y = clip_ref(y, low, high)
    return [y, mean.astype(x.dtype), var.astype(x.dtype)]


def batch_norm_train_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    dy, dmean, dvar = cot
    x, weight, _ = node.inputs
    _, mean, var = node.outputs
    dx = dweight = dbias = None
    activation = node.attrs.get("activation", "")
    if dy is not None and activation:
        # Through the activation first, its mask read off the output (elementwise.py).
        y = node.outputs[0]
        dy = (graph.add("relu_grad", [dy, y]) if activation == "relu" else
              clip_grad_of_output(graph, dy, y, node.attrs))
    if dy is not None:
        grads = graph.add_node("batch_norm_train_grad", [dy, x, weight, mean, var],
                               {"eps": node.attrs["eps"]})
        dx, dweight, dbias = grads.outputs
    # The statistics outputs feed only the running-statistic updates in training graphs
    # (buffers, so no cotangent reaches them there); when some loss does use them, they
    # are differentiated exactly: d mean/dx = 1/M, d var/dx = 2 (x - mean) / M.
    count = x.type.size // max(x.shape[1], 1)
    terms = []
    if dmean is not None:
        terms.append(graph.add("mul", [_as_channels(graph, dmean, x.type.ndim),
                                       _const(graph, 1.0 / max(count, 1), x.dtype)]))
    if dvar is not None:
        centered = graph.add("sub", [x, _as_channels(graph, mean, x.type.ndim)])
        scaled = graph.add("mul", [dvar, _const(graph, 2.0 / max(count, 1), x.dtype)])
        terms.append(graph.add("mul", [centered, _as_channels(graph, scaled, x.type.ndim)]))
    for term in terms:
        if dx is None:
            dx = term if term.shape == x.shape else graph.add("broadcast_to", [term],
                                                              shape=x.shape)
        else:
            dx = graph.add("add", [dx, term])
    return [dx, dweight, dbias]


# batch_norm_train's activation attribute as the backends' kernels take it (an int).
ACTIVATION_CODES = {"": 0, "relu": 1, "clip": 2}


def _activation(value: Any) -> str:
    if value not in ACTIVATION_CODES:
        raise ShapeError(f"batch_norm_train: activation must be '', 'relu' or 'clip', "
                         f"got {value!r}")
    return str(value)


register_op("batch_norm_train", inputs=("x", "weight", "bias"), shape=batch_norm_train_shape,
            ref=batch_norm_train_ref, vjp=batch_norm_train_vjp, kind=FusionKind.OPAQUE,
            attrs={"eps": _eps, "activation": Attr("", convert=_activation),
                   "low": Attr(0.0, convert=float), "high": Attr(0.0, convert=float)},
            doc="Training batch norm: normalizes with the batch statistics; outputs "
                "(y, mean, var), var biased, mean and var of shape (C,) (PyTorch semantics). "
                "activation 'relu' or 'clip' (to [low, high]) applies that op to y in the "
                "same pass (passes/bn_train_activation.py sets it).")


def batch_norm_train_grad_shape(in_types: list[TensorType],
                                attrs: dict[str, Any]) -> list[TensorType]:
    dy, x = in_types[0], in_types[1]
    if dy != x:
        raise ShapeError(f"the cotangent {dy} and the input {x} must match")
    channels = _check_channels(x, in_types[2:], ("weight", "mean", "var"))
    stat = TensorType((channels,), x.dtype)
    return [x, stat, stat]


def batch_norm_train_grad_ref(dy: np.ndarray, x: np.ndarray, weight: np.ndarray,
                              mean: np.ndarray, var: np.ndarray,
                              eps: float) -> list[np.ndarray]:
    c, axes = channel_shape(x), _reduce_axes(x.ndim)
    count = x.size // max(x.shape[1], 1)
    dy64 = dy.astype(np.float64)
    invstd = 1.0 / np.sqrt(var.astype(np.float64) + eps)
    xhat = (x.astype(np.float64) - mean.astype(np.float64).reshape(c)) * invstd.reshape(c)
    dbias = dy64.sum(axis=axes)
    dweight = (dy64 * xhat).sum(axis=axes)
    scale = (weight.astype(np.float64) * invstd / max(count, 1)).reshape(c)
    dx = scale * (count * dy64 - dbias.reshape(c) - xhat * dweight.reshape(c))
    return [dx.astype(x.dtype), dweight.astype(x.dtype), dbias.astype(x.dtype)]


register_op("batch_norm_train_grad", inputs=("dy", "x", "weight", "mean", "var"),
            shape=batch_norm_train_grad_shape, ref=batch_norm_train_grad_ref,
            vjp=no_second_order, kind=FusionKind.OPAQUE, attrs={"eps": _eps},
            doc="(dx, dweight, dbias) of batch_norm_train's y: with xhat the normalized x, "
                "dx = w / (M sqrt(var + eps)) * (M dy - sum(dy) - xhat sum(dy xhat)).")


# ---- synchronized batch norm (training, statistics over every rank) --------------------
# Under data parallelism with synchronized batch norm, the statistics are those of the
# global batch: each rank's per-channel mean is averaged over the ranks (allreduce, equal
# counts on every rank), then the mean of the squared deviations from that global mean
# (a second allreduce: the two-pass variance, as the fused kernel computes it), and x is
# normalized with them by batch_norm_normalize. Autodiff differentiates the whole chain:
# the normalize op's VJP gives local per-channel sums for the mean and the variance
# (sum(dy) and sum(dy * xhat), scaled), whose allreduce is the allreduce op's own VJP, so
# the backward pass averages those sums over the ranks exactly where torch's SyncBatchNorm
# does.

def batch_norm_normalize_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    _check_channels(in_types[0], in_types[1:], ("weight", "bias", "mean", "var"))
    return in_types[0]


def batch_norm_normalize_ref(x: np.ndarray, weight: np.ndarray, bias: np.ndarray,
                             mean: np.ndarray, var: np.ndarray, eps: float) -> np.ndarray:
    return batch_norm_ref(x, weight, bias, mean, var, eps, 0.1)


def batch_norm_normalize_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    # y = xhat * w + b, xhat = (x - mean) / sqrt(var + eps); unlike inference batch norm
    # mean and var are values of the graph here (the batch's), differentiated:
    # dx = dy * w / sqrt(var + eps), dw = sum(dy * xhat), db = sum(dy),
    # dmean = -sum(dx), dvar = -w * sum(dy * xhat) / (2 (var + eps)).
    dy = cot[0]
    x, weight, _, mean, var = node.inputs
    eps = node.attrs["eps"]
    channels, dtype = x.shape[1], x.dtype
    zeros = _const(graph, np.zeros(channels), dtype)
    ones = _const(graph, np.ones(channels), dtype)
    dx = graph.add("batch_norm", [dy, weight, zeros, zeros, var], eps=eps)
    xhat = graph.add("batch_norm", [x, ones, zeros, mean, var], eps=eps)
    dweight = _channel_sum(graph, graph.add("mul", [dy, xhat]), channels)
    dbias = _channel_sum(graph, dy, channels)
    dmean = graph.add("mul", [_channel_sum(graph, dx, channels), _const(graph, -1.0, dtype)])
    shifted = graph.add("add", [var, _const(graph, eps, dtype)])
    half = graph.add("mul", [graph.add("mul", [weight, dweight]), _const(graph, -0.5, dtype)])
    dvar = graph.add("div", [half, shifted])
    return [dx, dweight, dbias, dmean, dvar]


register_op("batch_norm_normalize", inputs=("x", "weight", "bias", "mean", "var"),
            shape=batch_norm_normalize_shape, ref=batch_norm_normalize_ref,
            vjp=batch_norm_normalize_vjp, kind=FusionKind.OPAQUE, attrs={"eps": _eps},
            doc="(x - mean) / sqrt(var + eps) * weight + bias per channel, as batch_norm, "
                "with mean and var differentiated: synchronized batch norm's normalization "
                "by the global batch's statistics.")


def sync_batch_norm(graph: Any, x: Any, weight: Any, bias: Any, eps: float,
                    world_size: int, loc: str | None = None) -> tuple[Any, Any, Any]:
    """(y, mean, var) of training batch norm over the global batch of `world_size` ranks,
    each holding an equal share x (see the comment above): var is biased, over the
    global count."""
    channels = _check_channels(x.type, [weight.type, bias.type], ("weight", "bias"))
    count = x.type.size // max(channels, 1)
    if channels and count * world_size == 1:
        raise ShapeError(f"Expected more than 1 value per channel when training, got input "
                         f"size {list(x.shape)} on {world_size} rank(s) (batch norm in "
                         f"training needs a global batch or spatial size above 1)")
    inv = _const(graph, 1.0 / max(count, 1), x.dtype)
    local_mean = graph.add("mul", [_channel_sum(graph, x, channels), inv])
    mean = graph.add("allreduce", [local_mean], world_size=world_size)
    centered = graph.add("sub", [x, _as_channels(graph, mean, x.type.ndim)])
    squares = _channel_sum(graph, graph.add("mul", [centered, centered]), channels)
    var = graph.add("allreduce", [graph.add("mul", [squares, inv])], world_size=world_size)
    y = graph.add("batch_norm_normalize", [x, weight, bias, mean, var], loc=loc, eps=eps)
    return y, mean, var


# ---- dropout --------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB


def _mix64(z: int) -> int:
    """splitmix64's finalizer on a Python int (mod 2**64)."""
    z &= _MASK64
    z = ((z ^ (z >> 30)) * MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * MIX2) & _MASK64
    return z ^ (z >> 31)


def dropout_key(seed: int, salt: int) -> int:
    """The 64-bit stream key for one (seed, salt): element i of the mask hashes
    key + (i + 1) * GOLDEN (the i-th output of a splitmix64 stream seeded with key)."""
    return _mix64(_mix64(int(seed) + GOLDEN) ^ ((int(salt) * MIX2) & _MASK64))


def dropout_keep(size: int, seed: int, salt: int, p: float) -> np.ndarray:
    """The keep mask (bool, flat): u >= p with u = top 53 bits of the hash / 2**53."""
    u64 = np.uint64
    z = u64(dropout_key(seed, salt)) + (np.arange(1, size + 1, dtype=u64) * u64(GOLDEN))
    z = (z ^ (z >> u64(30))) * u64(MIX1)
    z = (z ^ (z >> u64(27))) * u64(MIX2)
    z = z ^ (z >> u64(31))
    u = (z >> u64(11)).astype(np.float64) * 2.0 ** -53
    return u >= p


def _probability(value: Any) -> float:
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ShapeError(f"dropout p must be in [0, 1), got {value}")
    return value


def dropout_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    x = in_types[0]
    expect_float(x, "input")
    if len(in_types) == 2 and (in_types[1].dtype != "int64" or in_types[1].shape != ()):
        raise ShapeError(f"the dropout seed must be an int64 scalar, got {in_types[1]}")
    return x


def dropout_ref(x: np.ndarray, seed: np.ndarray | None = None, *, p: float,
                salt: int) -> np.ndarray:
    keep = dropout_keep(x.size, 0 if seed is None else int(seed), salt, p).reshape(x.shape)
    scale = x.dtype.type(1.0 / (1.0 - p))
    # x * (mask * scale), as PyTorch: a dropped NaN or Inf is NaN, not 0
    return (x * np.where(keep, scale, x.dtype.type(0))).astype(x.dtype)


def dropout_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    # the same mask (same seed, salt, p) on the cotangent; the seed has no gradient
    grad = graph.add("dropout", [cot[0]] + node.inputs[1:], p=node.attrs["p"],
                     salt=node.attrs["salt"])
    return [grad] + [None] * (len(node.inputs) - 1)


register_op("dropout", inputs=("x", "seed?"), shape=dropout_shape, ref=dropout_ref,
            vjp=dropout_vjp, kind=FusionKind.ELEMWISE,
            attrs={"p": Attr(convert=_probability), "salt": Attr(0, convert=int)},
            doc="x * keep / (1 - p), keep = hash(seed, salt, index) >= p. The seed is an "
                "int64 scalar input (fresh per call); it is optional only so the DSL can "
                "record dropout before lowering supplies it, and a missing seed means 0.")


# ---- channel dropout (nn.Dropout2d) ------------------------------------------------------
# The mask of dropout drawn over the N * C channels (element n * C + c of the same hash
# stream), each kept or dropped whole: x[n, c] * keep[n, c] / (1 - p), as torch's
# Dropout2d (and Dropout1d/3d: any (N, C, ...) input).

def channel_dropout_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    x = dropout_shape(in_types, attrs)
    if x.ndim < 2:
        raise ShapeError(f"channel dropout needs an (N, C, ...) input, got shape {x.shape}")
    return x


def channel_dropout_ref(x: np.ndarray, seed: np.ndarray | None = None, *, p: float,
                        salt: int) -> np.ndarray:
    planes = x.shape[0] * x.shape[1]
    keep = dropout_keep(planes, 0 if seed is None else int(seed), salt, p)
    scale = x.dtype.type(1.0 / (1.0 - p))
    factor = np.where(keep, scale, x.dtype.type(0)).reshape(x.shape[:2] + (1,) * (x.ndim - 2))
    with np.errstate(all="ignore"):   # a dropped NaN or Inf is NaN, as in PyTorch
        return (x * factor).astype(x.dtype)


def channel_dropout_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    grad = graph.add("channel_dropout", [cot[0]] + node.inputs[1:], p=node.attrs["p"],
                     salt=node.attrs["salt"])
    return [grad] + [None] * (len(node.inputs) - 1)


register_op("channel_dropout", inputs=("x", "seed?"), shape=channel_dropout_shape,
            ref=channel_dropout_ref, vjp=channel_dropout_vjp, kind=FusionKind.INJECTIVE,
            attrs={"p": Attr(convert=_probability), "salt": Attr(0, convert=int)},
            doc="x[n, c] * keep[n, c] / (1 - p): whole channels dropped (nn.Dropout2d); "
                "keep is dropout's hash over the N * C channel indexes.")
