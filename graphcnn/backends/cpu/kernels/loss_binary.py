"""bce_with_logits kernels: one parallel pass over the elements, each loss in float64 by
the reference's formulas (graphcnn/ops/loss_binary.py), the sum reduced by batch_total."""
from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from numba import prange

from graphcnn.backends.cpu.registry import JIT, REDUCE_JIT, cpu_kernel, launch
from graphcnn.ops.loss import batch_total


@numba.njit(inline="always")
def _softplus_neg(x):
    """-log_sigmoid(x) = max(-x, 0) + log1p(exp(-|x|))."""
    return max(-x, 0.0) + math.log1p(math.exp(-abs(x)))


@numba.njit(inline="always")
def _sigmoid(x):
    e = math.exp(-abs(x))
    return 1.0 / (1.0 + e) if x >= 0 else e / (1.0 + e)


@numba.njit(inline="always")
def _element(x, y, weighted, p):
    if weighted:
        return (1.0 - y) * x + (1.0 + (p - 1.0) * y) * _softplus_neg(x)
    # min(x, 0) written out: Python's min would return x for a NaN second argument only
    low = x if x < 0.0 else 0.0
    low = x if x != x else low
    return (1.0 - y) * x - low + math.log1p(math.exp(-abs(x)))


@numba.njit(**REDUCE_JIT)
def _bce_sum(x, y, weighted, weights):
    total = 0.0
    width = weights.size
    for i in prange(x.size):
        total += _element(np.float64(x[i]), np.float64(y[i]), weighted, weights[i % width])
    return total


@numba.njit(**JIT)
def _bce_grad(x, y, weighted, weights, wrt_target, scale, out):
    width = weights.size
    for i in prange(x.size):
        xi, yi, p = np.float64(x[i]), np.float64(y[i]), weights[i % width]
        if wrt_target:
            d = -xi + (p - 1.0) * _softplus_neg(xi) if weighted else -xi
        elif weighted:
            d = (1.0 + (p - 1.0) * yi) * _sigmoid(xi) - p * yi
        else:
            d = _sigmoid(xi) - yi
        out[i] = d * scale


_UNWEIGHTED = np.ones(1, np.float64)


def weights_of(attrs: dict[str, Any]) -> tuple[bool, np.ndarray]:
    """(weighted, the pos_weight vector: its element i % size applies to flat element i)."""
    if attrs["pos_weight"] is None:
        return False, _UNWEIGHTED
    return True, np.asarray(attrs["pos_weight"], np.float64)


@cpu_kernel("bce_with_logits")
def bce_with_logits_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                           attrs: dict[str, Any]) -> None:
    x, y = ins
    weighted, weights = weights_of(attrs)
    total = launch(_bce_sum, x.reshape(-1), y.reshape(-1), weighted, weights)
    outs[0][()] = batch_total(total, outs[0].dtype, x.size, attrs["reduction"])


@cpu_kernel("bce_with_logits_grad")
def bce_with_logits_grad_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                                attrs: dict[str, Any]) -> None:
    g, x, y = ins
    weighted, weights = weights_of(attrs)
    scale = float(g) / x.size if attrs["reduction"] == "mean" and x.size else float(g)
    launch(_bce_grad, x.reshape(-1), y.reshape(-1), weighted, weights,
           attrs["wrt"] == "target", scale, outs[0].reshape(-1))
