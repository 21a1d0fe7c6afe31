"""transpose: a gather copy, parallel over the output's rows. Sizes and strides are
arguments (int64 arrays), so the kernel compiles once per dtype for any rank and shape."""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange

from graphcnn.backends.cpu.registry import JIT, TASK_JIT, cpu_kernel, launch


@numba.njit(**TASK_JIT)
def _row_base(row, out_shape, src_strides):
    """Offset in src of the first element of output row `row` (all axes but the last)."""
    base = 0
    rest = row
    for d in range(out_shape.shape[0] - 2, -1, -1):
        size = out_shape[d]
        base += (rest % size) * src_strides[d]
        rest //= size
    return base


@numba.njit(**JIT)
def _transpose(src, dst, out_shape, src_strides):
    """dst (flat, C order over out_shape) = src (flat) read with the permuted strides:
    output index (i_0, ..., i_k) reads src[sum_d i_d * src_strides[d]]."""
    ndim = out_shape.shape[0]
    inner = out_shape[ndim - 1]
    inner_stride = src_strides[ndim - 1]
    rows = dst.size // inner
    for task in prange(rows):
        row = np.int64(task)  # prange may count unsigned; int64 keeps the index arithmetic integral
        base = _row_base(row, out_shape, src_strides)
        start = row * inner
        for m in range(inner):
            dst[start + m] = src[base + m * inner_stride]


@cpu_kernel("transpose")
def transpose_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    x, out = ins[0], outs[0]
    if out.size == 0:  # also covers a zero-size last axis
        return
    if x.ndim == 0:
        out[...] = x
        return
    strides = np.array(x.strides, dtype=np.int64) // x.itemsize
    perm = attrs["perm"]
    launch(_transpose, x.reshape(-1), out.reshape(-1), np.array(out.shape, dtype=np.int64),
           np.array([strides[p] for p in perm], dtype=np.int64))
