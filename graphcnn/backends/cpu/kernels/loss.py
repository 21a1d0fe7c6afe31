"""Loss kernels: row-parallel, log-sum-exp in float64 for stability."""
from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from numba import prange

from graphcnn.backends.cpu.registry import JIT, REDUCE_JIT, cpu_kernel, launch
from graphcnn.ops.loss import batch_total


@numba.njit(inline="always")
def _peak_exp_sum(logits, i):
    """Row i's maximum m and the sum of exp(v - m) over it: log-sum-exp = m + log(sum),
    and softmax = exp(v - m) / sum, without overflow."""
    c = logits.shape[1]
    peak = np.float64(logits[i, 0])
    for j in range(1, c):
        v = np.float64(logits[i, j])
        peak = v if (v > peak) | (v != v) else peak  # a NaN is the peak: the row is NaN
    total = 0.0
    for j in range(c):
        total += math.exp(np.float64(logits[i, j]) - peak)
    return peak, total


@numba.njit(**JIT)
def _cross_entropy(logits, labels, losses):
    n = logits.shape[0]
    for i in prange(n):
        peak, total = _peak_exp_sum(logits, i)
        # (peak - picked) + log(total): log(total) + peak first would round log(4)
        # away against a peak of 1e17.
        losses[i] = (peak - np.float64(logits[i, labels[i]])) + math.log(total)


@numba.njit(**JIT)
def _cross_entropy_grad(scale, logits, labels, out):
    n, c = logits.shape
    for i in prange(n):
        peak, total = _peak_exp_sum(logits, i)
        for j in range(c):
            p = math.exp(np.float64(logits[i, j]) - peak) / total
            out[i, j] = (p - (1.0 if j == labels[i] else 0.0)) * scale


@cpu_kernel("cross_entropy")
def cross_entropy_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                         attrs: dict[str, Any]) -> None:
    logits, labels = ins
    losses = np.empty(len(labels), np.float64)  # tiny (batch-sized) scratch
    launch(_cross_entropy, logits, labels, losses)
    outs[0][()] = batch_total(losses.sum(), outs[0].dtype, len(labels), attrs["reduction"])


@cpu_kernel("cross_entropy_grad")
def cross_entropy_grad_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                              attrs: dict[str, Any]) -> None:
    g, logits, labels = ins
    scale = float(g) / len(labels) if attrs["reduction"] == "mean" else float(g)
    launch(_cross_entropy_grad, scale, logits, labels, outs[0])


@numba.njit(**REDUCE_JIT)
def _sum_squared_difference(a, b):
    total = 0.0
    for i in prange(a.size):
        d = np.float64(a[i]) - np.float64(b[i])
        total += d * d
    return total


@numba.njit(**JIT)
def _scaled_difference(a, b, scale, out):
    for i in prange(a.size):
        out[i] = (a[i] - b[i]) * scale


@cpu_kernel("mse")
def mse_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    pred, target = ins
    total = launch(_sum_squared_difference, pred.reshape(-1), target.reshape(-1))
    outs[0][()] = batch_total(total, outs[0].dtype, pred.size, attrs["reduction"])


@cpu_kernel("mse_grad")
def mse_grad_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    g, pred, target = ins
    scale = 2 * float(g) / (pred.size if attrs["reduction"] == "mean" else 1)
    launch(_scaled_difference, pred.reshape(-1), target.reshape(-1), scale, outs[0].reshape(-1))
