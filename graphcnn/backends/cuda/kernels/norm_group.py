"""Group norm (and instance norm, G = C) on the device.

x is viewed as N * G rows of M = C / G * S contiguous values. One block per row sums its
float64 mean and then its biased variance (two passes, as the cpu kernel and the
reference), and normalizes the row; the gradient's dx does the same per row (keeping the
row statistics in a float64 scratch), and then one block per channel sums dweight and
dbias over the samples' rows, reading those statistics."""
from __future__ import annotations

import math
from typing import Any

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
    reduction_blocks,
    scratch,
)

cu = numba_cuda()
f8, i8 = types.float64, types.int64


@device_kernel(lambda f: (f[::1], f[::1], f[::1], f8, i8, i8, i8, i8, f[::1]))
def _group_norm(x, weight, bias, eps, rows, groups, cg, s_len, out):
    buf = cu.shared.array(THREADS, f8)
    tid = cu.threadIdx.x
    m = cg * s_len
    r = cu.blockIdx.x
    while r < rows:
        base = r * m
        total = 0.0
        k = tid
        while k < m:
            total += x[base + k]
            k += THREADS
        mean = block_sum(buf, tid, total) / dmax(m, 1)
        total = 0.0
        k = tid
        while k < m:
            d = f8(x[base + k]) - mean
            total += d * d
            k += THREADS
        rstd = 1.0 / math.sqrt(block_sum(buf, tid, total) / dmax(m, 1) + eps)
        first = (r % groups) * cg
        k = tid
        while k < m:
            c = first + k // s_len
            out[base + k] = (x[base + k] - mean) * rstd * f8(weight[c]) + f8(bias[c])
            k += THREADS
        r += cu.gridDim.x


@cuda_kernel("group_norm")
def group_norm_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    x, weight, bias = ins
    if x.size == 0:
        return []
    groups = int(attrs["num_groups"])
    rows = x.shape[0] * groups
    cg = x.shape[1] // groups
    s_len = x.size // max(x.shape[0] * x.shape[1], 1)
    return [Launch(_group_norm, reduction_blocks(rows), THREADS,
                   (flat(x), weight, bias, float(attrs["eps"]), rows, groups, cg, s_len,
                    flat(outs[0])))]


@device_kernel(lambda f: (f[::1], f[::1], f[::1], f8, i8, i8, i8, i8, f[::1], f8[::1],
                          f8[::1]))
def _group_norm_dx(dy, x, weight, eps, rows, groups, cg, s_len, dx, mean64, rstd64):
    buf = cu.shared.array(THREADS, f8)
    tid = cu.threadIdx.x
    m = cg * s_len
    r = cu.blockIdx.x
    while r < rows:
        base = r * m
        first = (r % groups) * cg
        total = 0.0
        k = tid
        while k < m:
            total += x[base + k]
            k += THREADS
        mean = block_sum(buf, tid, total) / dmax(m, 1)
        total = 0.0
        k = tid
        while k < m:
            d = f8(x[base + k]) - mean
            total += d * d
            k += THREADS
        rstd = 1.0 / math.sqrt(block_sum(buf, tid, total) / dmax(m, 1) + eps)
        t1 = 0.0
        t2 = 0.0
        k = tid
        while k < m:
            gy = f8(dy[base + k]) * f8(weight[first + k // s_len])
            t1 += gy
            t2 += gy * (x[base + k] - mean) * rstd
            k += THREADS
        sum_gy = block_sum(buf, tid, t1)
        sum_gy_xhat = block_sum(buf, tid, t2)
        scale = rstd / dmax(m, 1)
        k = tid
        while k < m:
            gy = f8(dy[base + k]) * f8(weight[first + k // s_len])
            xhat = (x[base + k] - mean) * rstd
            dx[base + k] = scale * (m * gy - sum_gy - xhat * sum_gy_xhat)
            k += THREADS
        if tid == 0:
            mean64[r] = mean
            rstd64[r] = rstd
        r += cu.gridDim.x


@device_kernel(lambda f: (f[::1], f[::1], f8[::1], f8[::1], i8, i8, i8, i8, f[::1], f[::1]))
def _group_norm_dparams(dy, x, mean64, rstd64, samples, groups, cg, s_len, dweight, dbias):
    """One block per channel: sum over samples and positions of dy * xhat and of dy."""
    buf = cu.shared.array(THREADS, f8)
    tid = cu.threadIdx.x
    channels = groups * cg
    c = cu.blockIdx.x
    while c < channels:
        g = c // cg
        t_w = 0.0
        t_b = 0.0
        k = tid
        while k < samples * s_len:
            n = k // s_len
            r = n * groups + g
            j = (n * channels + c) * s_len + (k - n * s_len)
            d = f8(dy[j])
            t_b += d
            t_w += d * (x[j] - mean64[r]) * rstd64[r]
            k += THREADS
        t_w = block_sum(buf, tid, t_w)
        t_b = block_sum(buf, tid, t_b)
        if tid == 0:
            dweight[c] = t_w
            dbias[c] = t_b
        c += cu.gridDim.x


@cuda_kernel("group_norm_grad")
def group_norm_grad_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]
                         ) -> list[Launch]:
    dy, x, weight = ins
    dx, dweight, dbias = outs
    groups = int(attrs["num_groups"])
    samples, channels = x.shape[0], x.shape[1]
    rows, cg = samples * groups, channels // groups
    s_len = x.size // max(samples * channels, 1)
    mean64, rstd64 = scratch(rows), scratch(rows)
    launches = []
    if rows and cg * s_len:
        launches.append(Launch(_group_norm_dx, reduction_blocks(rows), THREADS,
                               (flat(dy), flat(x), weight, float(attrs["eps"]), rows, groups,
                                cg, s_len, flat(dx), mean64, rstd64)))
    if channels:
        launches.append(Launch(_group_norm_dparams, reduction_blocks(channels), THREADS,
                               (flat(dy), flat(x), mean64, rstd64, samples, groups, cg, s_len,
                                dweight, dbias)))
    return launches
