"""softmax / log_softmax and their gradient helpers along any axis: every tensor is viewed
as (outer, axis, inner) and the kernels run in parallel over the outer*inner lines,
accumulating in float64. Two compiled functions per dtype serve all four ops."""
from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from numba import prange

from graphcnn.backends.cpu.registry import JIT, cpu_kernel, launch


@numba.njit(**JIT)
def _softmax_lines(x, out, log):
    outer, n, inner = x.shape
    for line in prange(outer * inner):
        o = line // inner
        i = line % inner
        peak = np.float64(x[o, 0, i])
        for j in range(1, n):
            v = np.float64(x[o, j, i])
            peak = v if (v > peak) | (v != v) else peak  # a NaN is the peak: NaN out
        total = 0.0
        for j in range(n):
            total += math.exp(np.float64(x[o, j, i]) - peak)
        if log:
            # (x - peak) - log(total), not x - (peak + log(total)): with a peak of 1e17,
            # peak + log(4) rounds back to the peak and every output would be 0.
            lse = math.log(total)
            for j in range(n):
                out[o, j, i] = (np.float64(x[o, j, i]) - peak) - lse
        else:
            scale = 1.0 / total
            for j in range(n):
                out[o, j, i] = math.exp(np.float64(x[o, j, i]) - peak) * scale


@numba.njit(**JIT)
def _softmax_grad_lines(g, y, out, log):
    """softmax: y * (g - sum(g*y)); log_softmax: g - exp(y) * sum(g)."""
    outer, n, inner = g.shape
    for line in prange(outer * inner):
        o = line // inner
        i = line % inner
        total = 0.0
        if log:
            for j in range(n):
                total += g[o, j, i]
            for j in range(n):
                out[o, j, i] = g[o, j, i] - math.exp(np.float64(y[o, j, i])) * total
        else:
            for j in range(n):
                total += np.float64(g[o, j, i]) * y[o, j, i]
            for j in range(n):
                out[o, j, i] = y[o, j, i] * (g[o, j, i] - total)


def lines(a: np.ndarray, axis: int) -> np.ndarray:
    """`a` viewed as (outer, size along axis, inner)."""
    outer = math.prod(a.shape[:axis])
    inner = math.prod(a.shape[axis + 1:])
    return a.reshape(outer, a.shape[axis], inner)


def _forward(log: bool):
    def kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
        axis = attrs["axis"]
        if ins[0].size:
            launch(_softmax_lines, lines(ins[0], axis), lines(outs[0], axis), log)
    return kernel


def _backward(log: bool):
    def kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
        axis = attrs["axis"]
        if ins[0].size:
            launch(_softmax_grad_lines, lines(ins[0], axis), lines(ins[1], axis),
                   lines(outs[0], axis), log)
    return kernel


cpu_kernel("softmax")(_forward(False))
cpu_kernel("log_softmax")(_forward(True))
cpu_kernel("softmax_grad")(_backward(False))
cpu_kernel("log_softmax_grad")(_backward(True))
