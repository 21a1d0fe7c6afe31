"""Reductions, all accumulating in float64 and combined in a fixed order (deterministic):
a block-wide tree sum (`block_sum`), `sum_to` (any set of reduced axes: a block per output
element when the reduced extent is long, a thread per output element when it is short),
global_avg_pool2d, and the final sum of per-row / per-block partials used by the losses."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import types

from graphcnn.backends.cuda.device import numba_cuda
from graphcnn.backends.cuda.registry import (
    THREADS,
    Launch,
    cuda_kernel,
    device_function,
    device_kernel,
    flat,
    launch_1d,
    nan_max,
    reduction_blocks,
)

cu = numba_cuda()
f8 = types.float64
i8 = types.int64
U6 = types.UniTuple(i8, 6)
MAX_RANK = 6
BLOCK_REDUCE_MIN = 64  # reduced extents at least this long get a block per output


@device_function
def block_sum(buf, tid, v):
    """The sum of `v` over the block's THREADS threads (every thread gets it)."""
    buf[tid] = v
    cu.syncthreads()
    s = THREADS // 2
    while s > 0:
        if tid < s:
            buf[tid] += buf[tid + s]
        cu.syncthreads()
        s //= 2
    total = buf[0]
    cu.syncthreads()
    return total


@device_function
def peak_exp_sum(x, base, n, stride):
    """(m, s) over the line x[base + j * stride], j < n, in float64: its maximum m and the
    sum s of exp(v - m), so that log-sum-exp = m + log(s) and softmax = exp(v - m) / s
    without overflow (softmax along an axis, and cross-entropy's rows); a NaN in the line
    is its peak, so everything computed from it is NaN (as the reference)."""
    peak = f8(x[base])
    for j in range(1, n):
        peak = nan_max(peak, f8(x[base + j * stride]))
    total = 0.0
    for j in range(n):
        total += math.exp(f8(x[base + j * stride]) - peak)
    return peak, total


@device_function
def offset6(i, dims, st):
    """The offset of flat index i (C order over dims) in an array with strides st."""
    off = 0
    q = i % dims[5]
    i //= dims[5]
    off += q * st[5]
    q = i % dims[4]
    i //= dims[4]
    off += q * st[4]
    q = i % dims[3]
    i //= dims[3]
    off += q * st[3]
    q = i % dims[2]
    i //= dims[2]
    off += q * st[2]
    q = i % dims[1]
    i //= dims[1]
    off += q * st[1]
    off += i * st[0]
    return off


@device_kernel(lambda f: (f[::1], f[::1], i8, U6, U6, U6, U6, f8))
def _reduce_blocks(x, out, R, kdims, kst, rdims, rst, scale):
    """out[o] = scale * sum_r x[kept(o) + reduced(r)]: one block per output element."""
    buf = cu.shared.array(THREADS, f8)
    tid = cu.threadIdx.x
    o = cu.blockIdx.x
    while o < out.size:
        base = offset6(o, kdims, kst)
        total = 0.0
        r = tid
        while r < R:
            total += x[base + offset6(r, rdims, rst)]
            r += THREADS
        total = block_sum(buf, tid, total)
        if tid == 0:
            out[o] = total * scale
        o += cu.gridDim.x


@device_kernel(lambda f: (f[::1], f[::1], i8, U6, U6, U6, U6, f8))
def _reduce_threads(x, out, R, kdims, kst, rdims, rst, scale):
    """The same with one thread per output element (short reduced extents)."""
    o = cu.grid(1)
    while o < out.size:
        base = offset6(o, kdims, kst)
        total = 0.0
        for r in range(R):
            total += x[base + offset6(r, rdims, rst)]
        out[o] = total * scale
        o += cu.gridsize(1)


def _merge(dims: list[int], strides: list[int]) -> tuple[list[int], list[int]]:
    """Drop size-1 axes and merge axes that are contiguous with each other."""
    pairs = [(d, s) for d, s in zip(dims, strides) if d != 1]
    out: list[list[int]] = []
    for d, s in pairs:
        if out and out[-1][1] == s * d:
            out[-1][0] *= d
            out[-1][1] = s
        else:
            out.append([d, s])
    return [p[0] for p in out], [p[1] for p in out]


def pad6(dims: list[int], strides: list[int], what: str) -> tuple[tuple, tuple]:
    if len(dims) > MAX_RANK:
        raise NotImplementedError(f"{what}: {len(dims)} axes after merging; the cuda "
                                  f"backend handles {MAX_RANK}")
    pad = MAX_RANK - len(dims)
    return tuple([1] * pad + list(dims)), tuple([0] * pad + list(strides))


def contiguous_strides(shape: tuple[int, ...]) -> list[int]:
    return [int(np.prod(shape[d + 1:], dtype=np.int64)) for d in range(len(shape))]


def plan_reduce(x: Any, out: Any, src_shape: tuple[int, ...], dst_shape: tuple[int, ...],
                scale: float = 1.0) -> list[Launch]:
    """Sum x (of src_shape) over the axes broadcasting dst_shape to src_shape."""
    lead = len(src_shape) - len(dst_shape)
    dst = (1,) * lead + tuple(dst_shape)
    st = contiguous_strides(src_shape)
    kept = [d for d in range(len(src_shape)) if dst[d] == src_shape[d]]
    red = [d for d in range(len(src_shape)) if dst[d] != src_shape[d]]
    kdims, kst = _merge([src_shape[d] for d in kept], [st[d] for d in kept])
    rdims, rst = _merge([src_shape[d] for d in red], [st[d] for d in red])
    R = int(np.prod(rdims, dtype=np.int64)) if rdims else 1
    kdims6, kst6 = pad6(kdims, kst, "sum_to")
    rdims6, rst6 = pad6(rdims, rst, "sum_to")
    args = (flat(x), flat(out), R, kdims6, kst6, rdims6, rst6, float(scale))
    if R >= BLOCK_REDUCE_MIN:
        blocks = reduction_blocks(out.size)
        return [Launch(_reduce_blocks, blocks, THREADS, args)]
    return [launch_1d(_reduce_threads, out.size, *args)]


@cuda_kernel("sum_to")
def sum_to_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    return plan_reduce(ins[0], outs[0], ins[0].shape, outs[0].shape)


@cuda_kernel("global_avg_pool2d")
def global_avg_pool2d_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]
                           ) -> list[Launch]:
    n, c, h, w = ins[0].shape
    return plan_reduce(ins[0], outs[0], (n, c, h, w), (n, c, 1, 1), 1.0 / max(h * w, 1))


@device_kernel(lambda f: (f8[::1], i8, f[::1], f8))
def sum_partials(partials, n, out, scale):
    """out[0] = scale * sum(partials[:n]), one block, fixed order; the sum rounded to
    out's dtype before the scale (a loss's batch_total: a float32 sum past the range is
    inf, as the reference's and PyTorch's)."""
    buf = cu.shared.array(THREADS, f8)
    tid = cu.threadIdx.x
    total = 0.0
    i = tid
    while i < n:
        total += partials[i]
        i += THREADS
    total = block_sum(buf, tid, total)
    if tid == 0:
        out[0] = total
        out[0] = out[0] * scale
