"""Batch norm, dropout and channel dropout kernels.

Batch norm views x as (N, C, S) (S = the product of the spatial axes, 1 for (N, C)
inputs); statistics and gradient sums are per channel, accumulated in float64, in parallel
over channels. Dropout hashes (key, flat index) with splitmix64 in uint64, bit for bit the
mask of the NumPy reference (graphcnn.ops.norm.dropout_keep).
"""
from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from numba import prange

from graphcnn.backends.cpu.kernels import norm_train
from graphcnn.backends.cpu.registry import JIT, REDUCE_JIT, cpu_kernel, launch
from graphcnn.ops.norm import ACTIVATION_CODES, GOLDEN, MIX1, MIX2, dropout_key


def ncs(a: np.ndarray) -> np.ndarray:
    """(N, C, ...) viewed as (N, C, S)."""
    return a.reshape(a.shape[0], a.shape[1], math.prod(a.shape[2:]))


@numba.njit(**JIT)
def _batch_norm(x, weight, bias, mean, var, eps, out):
    n_len, c_len, s_len = x.shape
    for nc in prange(n_len * c_len):
        n = nc // c_len
        c = nc % c_len
        # (x - mean) * scale + bias, as the reference: folded into x * scale + shift,
        # an infinite scale (weight inf, or var + eps 0) makes inf - inf = NaN where the
        # reference has inf; the extra subtraction costs nothing in this memory-bound loop.
        scale = np.float64(weight[c]) / math.sqrt(np.float64(var[c]) + eps)
        centre, shift = np.float64(mean[c]), np.float64(bias[c])
        for s in range(s_len):
            out[n, c, s] = (x[n, c, s] - centre) * scale + shift


@numba.njit(**REDUCE_JIT)
def _batch_norm_train_grad(dy, x, weight, mean, var, eps, dx, dweight, dbias):
    n_len, c_len, s_len = x.shape
    count = max(n_len * s_len, 1)
    for c in prange(c_len):
        m = np.float64(mean[c])
        invstd = 1.0 / math.sqrt(np.float64(var[c]) + eps)
        # Each row's sums apart, then the rows': short dependent chains LLVM keeps in vector
        # lanes; invstd is applied to the sum, not to every product.
        sum_dy = 0.0
        sum_dy_xc = 0.0
        for n in range(n_len):
            row_dy = 0.0
            row_dy_xc = 0.0
            for s in range(s_len):
                g = np.float64(dy[n, c, s])
                row_dy += g
                row_dy_xc += g * (np.float64(x[n, c, s]) - m)
            sum_dy += row_dy
            sum_dy_xc += row_dy_xc
        sum_dy_xhat = sum_dy_xc * invstd
        dweight[c] = sum_dy_xhat
        dbias[c] = sum_dy
        scale = np.float64(weight[c]) * invstd / count
        # dx = k_dy * dy - k_x * (x - m) - k_0: the reference's formula with its constants
        # taken out of the loop (it ran at a third of memory speed). Finite constants mean
        # finite inputs (a NaN or Inf anywhere reaches the sums), where the two differ by
        # float64 rounding only; otherwise the reference's own formula keeps its NaN and Inf.
        k_dy = scale * count
        k_x = scale * invstd * sum_dy_xhat
        k_0 = scale * sum_dy
        fast = math.isfinite(k_dy) and math.isfinite(k_x) and math.isfinite(k_0)
        # The rows backwards: the last ones read are still in cache.
        for back in range(n_len):
            n = n_len - 1 - back
            if fast:
                for s in range(s_len):
                    dx[n, c, s] = (k_dy * np.float64(dy[n, c, s])
                                   - k_x * (np.float64(x[n, c, s]) - m) - k_0)
            else:
                for s in range(s_len):
                    xhat = (x[n, c, s] - m) * invstd
                    dx[n, c, s] = scale * (count * np.float64(dy[n, c, s]) - sum_dy
                                           - xhat * sum_dy_xhat)


@cpu_kernel("batch_norm", "batch_norm_normalize")   # the same formula
def batch_norm_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    x, weight, bias, mean, var = ins
    launch(_batch_norm, ncs(x), weight, bias, mean, var, attrs["eps"], ncs(outs[0]))


@cpu_kernel("batch_norm_train")
def batch_norm_train_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                            attrs: dict[str, Any]) -> None:
    x, weight, bias = ins
    y, mean, var = outs
    launch(norm_train.batch_norm_train_fast, ncs(x), weight, bias, attrs["eps"],
           ACTIVATION_CODES[attrs["activation"]], attrs["low"], attrs["high"],
           ncs(y), mean, var)


@cpu_kernel("batch_norm_train_grad")
def batch_norm_train_grad_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                                 attrs: dict[str, Any]) -> None:
    dy, x, weight, mean, var = ins
    dx, dweight, dbias = outs
    launch(_batch_norm_train_grad, ncs(dy), ncs(x), weight, mean, var, attrs["eps"],
           ncs(dx), dweight, dbias)


# ---- dropout --------------------------------------------------------------------------

_GOLDEN, _MIX1, _MIX2 = np.uint64(GOLDEN), np.uint64(MIX1), np.uint64(MIX2)
_S11, _S27, _S30, _S31 = np.uint64(11), np.uint64(27), np.uint64(30), np.uint64(31)


@numba.njit(**JIT)
def _dropout(x, out, key, p, scale):
    for i in prange(x.size):
        z = key + np.uint64(i + 1) * _GOLDEN
        z = (z ^ (z >> _S30)) * _MIX1
        z = (z ^ (z >> _S27)) * _MIX2
        z = z ^ (z >> _S31)
        u = np.float64(z >> _S11) * 2.0 ** -53
        # x * 0 where dropped, not 0: NaN or Inf stays NaN there, as in PyTorch
        out[i] = x[i] * (scale if u >= p else scale * 0)


@cpu_kernel("dropout")
def dropout_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    x, out = ins[0], outs[0]
    seed = int(ins[1]) if len(ins) == 2 else 0
    p = attrs["p"]
    key = np.uint64(dropout_key(seed, attrs["salt"]))
    launch(_dropout, x.reshape(-1), out.reshape(-1), key, p, x.dtype.type(1.0 / (1.0 - p)))


@numba.njit(**JIT)
def _channel_dropout(x, out, key, p, scale):
    planes, size = x.shape
    for plane in prange(planes):
        z = key + np.uint64(plane + 1) * _GOLDEN   # element `plane` of dropout's stream
        z = (z ^ (z >> _S30)) * _MIX1
        z = (z ^ (z >> _S27)) * _MIX2
        z = z ^ (z >> _S31)
        u = np.float64(z >> _S11) * 2.0 ** -53
        factor = scale if u >= p else scale * 0
        for i in range(size):
            out[plane, i] = x[plane, i] * factor


@cpu_kernel("channel_dropout")
def channel_dropout_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                           attrs: dict[str, Any]) -> None:
    x, out = ins[0], outs[0]
    if x.size == 0:
        return
    seed = int(ins[1]) if len(ins) == 2 else 0
    p = attrs["p"]
    key = np.uint64(dropout_key(seed, attrs["salt"]))
    planes = x.shape[0] * x.shape[1]
    launch(_channel_dropout, x.reshape(planes, -1), out.reshape(planes, -1), key, p,
           x.dtype.type(1.0 / (1.0 - p)))
