"""L1 and smooth L1 losses (graphcnn/ops/loss_box.py): a float64 parallel sum of the
per-element terms with the count of elements taken (targets that are NaN are left out
with ignore_nan), and the elementwise gradient."""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange

from graphcnn.backends.cpu.registry import JIT, REDUCE_JIT, cpu_kernel, launch
from graphcnn.ops.loss import batch_total


@numba.njit(inline="always")
def _term(x, beta):
    """0.5 x^2 / beta inside (-beta, beta), else |x| - 0.5 beta (NaN stays NaN)."""
    a = abs(x)
    if a < beta:
        return 0.5 * x * x / beta
    return a - 0.5 * beta


@numba.njit(inline="always")
def _slope(x, beta):
    """PyTorch's backward: x / beta inside (-beta, beta), else sign(x) with sign(0) = 0;
    with beta = 0 (l1) a NaN difference gives 0, with beta > 0 NaN."""
    if abs(x) < beta:
        return x / beta
    if x > 0:
        return 1.0
    if x < 0:
        return -1.0
    if x != x and beta > 0:
        return x
    return 0.0


@numba.njit(**REDUCE_JIT)
def _sum_terms(pred, target, beta, ignore_nan):
    total = 0.0
    count = 0
    for i in prange(pred.size):
        t = np.float64(target[i])
        if ignore_nan and t != t:
            continue
        total += _term(np.float64(pred[i]) - t, beta)
        count += 1
    return total, count


@numba.njit(**REDUCE_JIT)
def _count_targets(target):
    count = 0
    for i in prange(target.size):
        if target[i] == target[i]:
            count += 1
    return count


@numba.njit(**JIT)
def _gradient(pred, target, beta, ignore_nan, scale, out):
    for i in prange(pred.size):
        t = np.float64(target[i])
        if ignore_nan and t != t:
            out[i] = 0.0
        else:
            out[i] = _slope(np.float64(pred[i]) - t, beta) * scale


@cpu_kernel("l1", "smooth_l1")
def box_loss_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    pred, target = ins
    total, count = launch(_sum_terms, pred.reshape(-1), target.reshape(-1),
                          float(attrs.get("beta", 0.0)), bool(attrs["ignore_nan"]))
    if count == 0:   # every target ignored (see the op's docstring)
        outs[0][()] = 0.0
    else:
        outs[0][()] = batch_total(total, outs[0].dtype, count, attrs["reduction"])


@cpu_kernel("smooth_l1_grad")
def smooth_l1_grad_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                          attrs: dict[str, Any]) -> None:
    g, pred, target = ins
    ignore_nan = bool(attrs["ignore_nan"])
    scale = float(g)
    if attrs["reduction"] == "mean":
        count = launch(_count_targets, target.reshape(-1)) if ignore_nan else pred.size
        scale /= max(count, 1)
    launch(_gradient, pred.reshape(-1), target.reshape(-1), float(attrs["beta"]), ignore_nan,
           scale, outs[0].reshape(-1))
