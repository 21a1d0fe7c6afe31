"""bce_with_logits on the device: per-block float64 partial sums of the element losses
(the reference's formulas, graphcnn/ops/loss_binary.py), then a one-block sum scaled for
reduction='mean'; the gradient is one grid-stride pass reading the scalar cotangent on the
device. pos_weight travels as a small device vector, element i using weights[i % size]."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import types

from graphcnn.backends.cuda.device import numba_cuda
from graphcnn.backends.cuda.kernels.reduce import block_sum, sum_partials
from graphcnn.backends.cuda.registry import (
    MAX_BLOCKS,
    THREADS,
    Launch,
    blocks_for,
    cuda_kernel,
    device_function,
    device_kernel,
    flat,
    launch_1d,
    scratch,
)

cu = numba_cuda()
f8, b1 = types.float64, types.boolean


@device_function
def _softplus_neg(x):
    """-log_sigmoid(x) = max(-x, 0) + log1p(exp(-|x|))."""
    high = -x if -x > 0.0 else 0.0
    high = -x if x != x else high
    return high + math.log1p(math.exp(-abs(x)))


@device_function
def _sigmoid(x):
    e = math.exp(-abs(x))
    return 1.0 / (1.0 + e) if x >= 0 else e / (1.0 + e)


@device_function
def _element(x, y, weighted, p):
    if weighted:
        return (1.0 - y) * x + (1.0 + (p - 1.0) * y) * _softplus_neg(x)
    low = x if x < 0.0 else 0.0
    low = x if x != x else low
    return (1.0 - y) * x - low + math.log1p(math.exp(-abs(x)))


@device_kernel(lambda f: (f[::1], f[::1], b1, f8[::1], f8[::1]))
def _bce_blocks(x, y, weighted, weights, partials):
    buf = cu.shared.array(THREADS, f8)
    tid = cu.threadIdx.x
    width = weights.size
    total = 0.0
    i = cu.grid(1)
    while i < x.size:
        total += _element(f8(x[i]), f8(y[i]), weighted, weights[i % width])
        i += cu.gridsize(1)
    total = block_sum(buf, tid, total)
    if tid == 0:
        partials[cu.blockIdx.x] = total


@device_kernel(lambda f: (f[::1], f[::1], f[::1], b1, f8[::1], b1, f8, f[::1]))
def _bce_grad(g, x, y, weighted, weights, wrt_target, per_element, out):
    i = cu.grid(1)
    width = weights.size
    scale = f8(g[0]) * per_element
    while i < x.size:
        xi, yi, p = f8(x[i]), f8(y[i]), weights[i % width]
        if wrt_target:
            d = -xi + (p - 1.0) * _softplus_neg(xi) if weighted else -xi
        elif weighted:
            d = (1.0 + (p - 1.0) * yi) * _sigmoid(xi) - p * yi
        else:
            d = _sigmoid(xi) - yi
        out[i] = d * scale
        i += cu.gridsize(1)


_WEIGHTS: dict[tuple[float, ...], Any] = {}


def _weights(attrs: dict[str, Any]) -> tuple[bool, Any]:
    """(weighted, the pos_weight vector on the device, one copy per distinct value)."""
    key = attrs["pos_weight"]
    values = (1.0,) if key is None else tuple(key)
    if values not in _WEIGHTS:
        _WEIGHTS[values] = cu.to_device(np.asarray(values, np.float64))
    return key is not None, _WEIGHTS[values]


@cuda_kernel("bce_with_logits")
def bce_with_logits_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]
                         ) -> list[Launch]:
    x, y = ins
    weighted, weights = _weights(attrs)
    blocks = min(blocks_for(x.size), MAX_BLOCKS, 1024)
    partials = scratch(blocks)
    scale = 1.0 / x.size if attrs["reduction"] == "mean" and x.size else 1.0
    return [Launch(_bce_blocks, blocks, THREADS, (flat(x), flat(y), weighted, weights,
                                                  partials)),
            Launch(sum_partials, 1, THREADS, (partials, blocks, flat(outs[0]), scale))]


@cuda_kernel("bce_with_logits_grad")
def bce_with_logits_grad_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]
                              ) -> list[Launch]:
    g, x, y = ins
    weighted, weights = _weights(attrs)
    per = 1.0 / x.size if attrs["reduction"] == "mean" and x.size else 1.0
    return [launch_1d(_bce_grad, x.size, flat(g), flat(x), flat(y), weighted, weights,
                      attrs["wrt"] == "target", per, flat(outs[0]))]
