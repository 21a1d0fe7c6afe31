"""Losses: cross-entropy (a thread per row, log-sum-exp in float64, then a one-block sum
of the row losses) and mean squared error (per-block float64 partial sums, then a
one-block sum); their gradients read the scalar cotangent on the device."""
from __future__ import annotations

import math
from typing import Any

from numba import types

from graphcnn.backends.cuda.device import numba_cuda
from graphcnn.backends.cuda.kernels.reduce import block_sum, peak_exp_sum, sum_partials
from graphcnn.backends.cuda.registry import (
    MAX_BLOCKS,
    THREADS,
    Launch,
    blocks_for,
    cuda_kernel,
    device_kernel,
    flat,
    launch_1d,
    scratch,
)

cu = numba_cuda()
f8, i8 = types.float64, types.int64


@device_kernel(lambda f: (f[:, ::1], i8[::1], f8[::1]))
def _cross_entropy_rows(logits, labels, losses):
    i = cu.grid(1)
    n, c = logits.shape
    while i < n:
        peak, total = peak_exp_sum(logits[i], 0, c, 1)
        losses[i] = (peak - f8(logits[i, labels[i]])) + math.log(total)  # see the cpu's
        i += cu.gridsize(1)


@cuda_kernel("cross_entropy")
def cross_entropy_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    logits, labels = ins
    n = logits.shape[0]
    losses = scratch(n)
    scale = 1.0 / n if attrs["reduction"] == "mean" and n else 1.0
    return [launch_1d(_cross_entropy_rows, n, logits, labels, losses),
            Launch(sum_partials, 1, THREADS, (losses, n, flat(outs[0]), scale))]


@device_kernel(lambda f: (f[::1], f[:, ::1], i8[::1], f8, f[:, ::1]))
def _cross_entropy_grad(g, logits, labels, per_row, out):
    i = cu.grid(1)
    n, c = logits.shape
    scale = f8(g[0]) * per_row
    while i < n:
        peak, total = peak_exp_sum(logits[i], 0, c, 1)
        for j in range(c):
            p = math.exp(f8(logits[i, j]) - peak) / total
            out[i, j] = (p - (1.0 if j == labels[i] else 0.0)) * scale
        i += cu.gridsize(1)


@cuda_kernel("cross_entropy_grad")
def cross_entropy_grad_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]
                            ) -> list[Launch]:
    g, logits, labels = ins
    n = logits.shape[0]
    per_row = 1.0 / n if attrs["reduction"] == "mean" and n else 1.0
    return [launch_1d(_cross_entropy_grad, n, flat(g), logits, labels, per_row, outs[0])]


@device_kernel(lambda f: (f[::1], f[::1], f8[::1]))
def _squared_difference_blocks(a, b, partials):
    buf = cu.shared.array(THREADS, f8)
    tid = cu.threadIdx.x
    total = 0.0
    i = cu.grid(1)
    while i < a.size:
        d = f8(a[i]) - f8(b[i])
        total += d * d
        i += cu.gridsize(1)
    total = block_sum(buf, tid, total)
    if tid == 0:
        partials[cu.blockIdx.x] = total


@cuda_kernel("mse")
def mse_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    pred, target = ins
    blocks = min(blocks_for(pred.size), MAX_BLOCKS, 1024)
    partials = scratch(blocks)
    scale = 1.0 / pred.size if attrs["reduction"] == "mean" and pred.size else 1.0
    return [Launch(_squared_difference_blocks, blocks, THREADS,
                   (flat(pred), flat(target), partials)),
            Launch(sum_partials, 1, THREADS, (partials, blocks, flat(outs[0]), scale))]


@device_kernel(lambda f: (f[::1], f[::1], f[::1], f8, f[::1]))
def _scaled_difference(g, a, b, per_element, out):
    i = cu.grid(1)
    scale = 2.0 * f8(g[0]) * per_element
    while i < a.size:
        out[i] = (a[i] - b[i]) * scale
        i += cu.gridsize(1)


@cuda_kernel("mse_grad")
def mse_grad_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    g, pred, target = ins
    per = 1.0 / pred.size if attrs["reduction"] == "mean" and pred.size else 1.0
    return [launch_1d(_scaled_difference, pred.size, flat(g), flat(pred), flat(target), per,
                      flat(outs[0]))]
