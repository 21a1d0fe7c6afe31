"""Batch norm, dropout and channel dropout.

Batch norm views x as (N, C, S). Statistics and gradient sums are per channel: one block
per channel sums in float64 (a two-pass mean and variance, as the cpu kernel does) into a
float64 scratch the elementwise pass then reads, so nothing is rounded to float32 before
the normalization. Dropout hashes (key, flat index) with splitmix64 in uint64 on the
device, the key included: bit for bit the mask of the NumPy reference."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import types

from graphcnn.backends.cuda.device import numba_cuda
from graphcnn.backends.cuda.kernels.reduce import block_sum
from graphcnn.backends.cuda.registry import (
    THREADS,
    Launch,
    cuda_kernel,
    device_kernel,
    dmax,
    flat,
    launch_1d,
    reduction_blocks,
    scratch,
)
from graphcnn.ops.norm import ACTIVATION_CODES, GOLDEN, MIX1, MIX2

cu = numba_cuda()
f8, i8, u8 = types.float64, types.int64, types.uint64


def _ncs(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return shape[0], shape[1], int(np.prod(shape[2:], dtype=np.int64))


@device_kernel(lambda f: (f[::1], f[::1], f[::1], f[::1], f[::1], f8, i8, i8, f[::1]))
def _batch_norm(x, weight, bias, mean, var, eps, C, S, out):
    i = cu.grid(1)
    while i < x.size:
        c = (i // S) % C
        # (x - mean) * scale + bias, as the reference (folded, an infinite scale makes
        # inf - inf = NaN where the reference has inf)
        scale = f8(weight[c]) / math.sqrt(f8(var[c]) + eps)
        out[i] = (x[i] - f8(mean[c])) * scale + f8(bias[c])
        i += cu.gridsize(1)


@cuda_kernel("batch_norm", "batch_norm_normalize")   # the same formula
def batch_norm_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    x, weight, bias, mean, var = ins
    _, c, s = _ncs(x.shape)
    return [launch_1d(_batch_norm, x.size, flat(x), weight, bias, mean, var,
                      float(attrs["eps"]), c, s, flat(outs[0]))]


@device_kernel(lambda f: (f[::1], i8, i8, i8, f[::1], f[::1], f8[::1], f8[::1]))
def _channel_stats(x, N, C, S, mean_out, var_out, mean64, var64):
    """One block per channel: float64 mean, then the biased variance around it."""
    buf = cu.shared.array(THREADS, f8)
    tid = cu.threadIdx.x
    count = dmax(N * S, 1)
    c = cu.blockIdx.x
    while c < C:
        total = 0.0
        k = tid
        while k < N * S:
            n = k // S
            total += x[(n * C + c) * S + (k - n * S)]
            k += THREADS
        mean = block_sum(buf, tid, total) / count
        total = 0.0
        k = tid
        while k < N * S:
            n = k // S
            d = f8(x[(n * C + c) * S + (k - n * S)]) - mean
            total += d * d
            k += THREADS
        var = block_sum(buf, tid, total) / count
        if tid == 0:
            mean64[c] = mean
            var64[c] = var
            mean_out[c] = mean
            var_out[c] = var
        c += cu.gridDim.x


@device_kernel(lambda f: (f[::1], f[::1], f[::1], f8[::1], f8[::1], f8, i8, i8, i8, f8, f8,
                          f[::1]))
def _normalize(x, weight, bias, mean64, var64, eps, C, S, act, low, high, out):
    """y, through the activation `act` (0 none, 1 relu, 2 clip to [low, high]; the
    relu and clip ops' formulas, which commute with the rounding to x's dtype)."""
    i = cu.grid(1)
    while i < x.size:
        c = (i // S) % C
        scale = f8(weight[c]) / math.sqrt(var64[c] + eps)
        y = (x[i] - mean64[c]) * scale + f8(bias[c])
        if act == 1:
            y = 0.0 if y <= 0 else y
        elif act == 2:
            y = low if y < low else (high if y > high else y)
        out[i] = y
        i += cu.gridsize(1)


@cuda_kernel("batch_norm_train")
def batch_norm_train_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]
                          ) -> list[Launch]:
    x, weight, bias = ins
    y, mean, var = outs
    n, c, s = _ncs(x.shape)
    mean64, var64 = scratch(c), scratch(c)
    return [Launch(_channel_stats, reduction_blocks(c), THREADS,
                   (flat(x), n, c, s, mean, var, mean64, var64)),
            launch_1d(_normalize, x.size, flat(x), weight, bias, mean64, var64,
                      float(attrs["eps"]), c, s, ACTIVATION_CODES[attrs["activation"]],
                      float(attrs["low"]), float(attrs["high"]), flat(y))]


@device_kernel(lambda f: (f[::1], f[::1], f[::1], f[::1], f8, i8, i8, i8, f[::1], f[::1],
                          f8[::1], f8[::1]))
def _grad_sums(dy, x, mean, var, eps, N, C, S, dweight, dbias, sum_dy, sum_dy_xhat):
    """Per channel (a block each): sum(dy) and sum(dy * xhat) in float64."""
    buf = cu.shared.array(THREADS, f8)
    tid = cu.threadIdx.x
    c = cu.blockIdx.x
    while c < C:
        m = f8(mean[c])
        invstd = 1.0 / math.sqrt(f8(var[c]) + eps)
        t1 = 0.0
        t2 = 0.0
        k = tid
        while k < N * S:
            n = k // S
            j = (n * C + c) * S + (k - n * S)
            g = f8(dy[j])
            t1 += g
            t2 += g * (x[j] - m) * invstd
            k += THREADS
        t1 = block_sum(buf, tid, t1)
        t2 = block_sum(buf, tid, t2)
        if tid == 0:
            sum_dy[c] = t1
            sum_dy_xhat[c] = t2
            dbias[c] = t1
            dweight[c] = t2
        c += cu.gridDim.x


@device_kernel(lambda f: (f[::1], f[::1], f[::1], f[::1], f[::1], f8[::1], f8[::1], f8, i8,
                          i8, i8, f[::1]))
def _grad_dx(dy, x, weight, mean, var, sum_dy, sum_dy_xhat, eps, count, C, S, dx):
    i = cu.grid(1)
    while i < x.size:
        c = (i // S) % C
        invstd = 1.0 / math.sqrt(f8(var[c]) + eps)
        xhat = (x[i] - f8(mean[c])) * invstd
        scale = f8(weight[c]) * invstd / count
        dx[i] = scale * (count * f8(dy[i]) - sum_dy[c] - xhat * sum_dy_xhat[c])
        i += cu.gridsize(1)


@cuda_kernel("batch_norm_train_grad")
def batch_norm_train_grad_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]
                               ) -> list[Launch]:
    dy, x, weight, mean, var = ins
    dx, dweight, dbias = outs
    n, c, s = _ncs(x.shape)
    s1, s2 = scratch(c), scratch(c)
    eps = float(attrs["eps"])
    return [Launch(_grad_sums, reduction_blocks(c), THREADS,
                   (flat(dy), flat(x), mean, var, eps, n, c, s, dweight, dbias, s1, s2)),
            launch_1d(_grad_dx, x.size, flat(dy), flat(x), weight, mean, var, s1, s2, eps,
                      max(n * s, 1), c, s, flat(dx))]


# ---- dropout ----------------------------------------------------------------------------------
_GOLDEN, _MIX1, _MIX2 = np.uint64(GOLDEN), np.uint64(MIX1), np.uint64(MIX2)
_S11, _S27, _S30, _S31 = np.uint64(11), np.uint64(27), np.uint64(30), np.uint64(31)


@device_kernel(lambda f: (f[::1], i8[::1], u8, f8, f, f[::1]))
def _dropout(x, seed, salt_mix, p, scale, out):
    """out = x * scale where hash(key, i) >= p, else x * 0 (PyTorch's x * mask * scale:
    NaN for a NaN or Inf); key = dropout_key(seed, salt)
    computed here (graphcnn.ops.norm.dropout_key), salt_mix = salt * MIX2 mod 2**64."""
    z = u8(seed[0]) + _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    z = z ^ (z >> _S31)
    z = z ^ salt_mix
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    key = z ^ (z >> _S31)
    i = cu.grid(1)
    while i < x.size:
        h = key + u8(i + 1) * _GOLDEN
        h = (h ^ (h >> _S30)) * _MIX1
        h = (h ^ (h >> _S27)) * _MIX2
        h = h ^ (h >> _S31)
        u = f8(h >> _S11) * 2.0 ** -53
        out[i] = x[i] * (scale if u >= p else scale * 0)  # NaN or Inf dropped: NaN
        i += cu.gridsize(1)


@cuda_kernel("dropout")
def dropout_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    from graphcnn.backends.cuda.registry import dummy
    x, out = ins[0], outs[0]
    seed = flat(ins[1]) if len(ins) == 2 else dummy(np.int64)
    p = float(attrs["p"])
    salt_mix = np.uint64((int(attrs["salt"]) * MIX2) & ((1 << 64) - 1))
    scale = np.dtype(x.dtype).type(1.0 / (1.0 - p))
    return [launch_1d(_dropout, x.size, flat(x), seed, salt_mix, p, scale, flat(out))]


@device_kernel(lambda f: (f[::1], i8[::1], u8, f8, f, i8, f[::1]))
def _channel_dropout(x, seed, salt_mix, p, scale, S, out):
    """dropout's mask over the channels: element i of x is in channel i // S, kept or
    dropped by the hash of (key, channel), as graphcnn.ops.norm.channel_dropout_ref."""
    z = u8(seed[0]) + _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    z = z ^ (z >> _S31)
    z = z ^ salt_mix
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    key = z ^ (z >> _S31)
    i = cu.grid(1)
    while i < x.size:
        h = key + u8(i // S + 1) * _GOLDEN
        h = (h ^ (h >> _S30)) * _MIX1
        h = (h ^ (h >> _S27)) * _MIX2
        h = h ^ (h >> _S31)
        u = f8(h >> _S11) * 2.0 ** -53
        out[i] = x[i] * (scale if u >= p else scale * 0)  # NaN or Inf dropped: NaN
        i += cu.gridsize(1)


@cuda_kernel("channel_dropout")
def channel_dropout_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]
                         ) -> list[Launch]:
    from graphcnn.backends.cuda.registry import dummy
    x, out = ins[0], outs[0]
    if x.size == 0:
        return []
    seed = flat(ins[1]) if len(ins) == 2 else dummy(np.int64)
    p = float(attrs["p"])
    salt_mix = np.uint64((int(attrs["salt"]) * MIX2) & ((1 << 64) - 1))
    scale = np.dtype(x.dtype).type(1.0 / (1.0 - p))
    spatial = x.size // (x.shape[0] * x.shape[1])
    return [launch_1d(_channel_dropout, x.size, flat(x), seed, salt_mix, p, scale, spatial,
                      flat(out))]
