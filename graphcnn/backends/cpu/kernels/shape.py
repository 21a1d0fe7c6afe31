"""Data-movement kernels: reshape/flatten (a flat copy) and concat/pad/slice, which are all
one operation: copy a box of one 4-D array into a box of another. Arrays of rank <= 4 are
viewed as 4-D (leading ones); box copies take offsets and sizes as arguments, so each
compiles once per dtype."""
from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu.registry import JIT, cpu_kernel, launch


@numba.njit(**JIT)
def _copy_flat(src, dst):
    for i in prange(dst.size):
        dst[i] = src[i]


@numba.njit(**JIT)
def _fill_flat(dst, value):
    for i in prange(dst.size):
        dst[i] = value


@numba.njit(**JIT)
def _copy_box(src, dst, src_start, dst_start, size):
    """dst[dst_start + k] = src[src_start + k] for k in the box `size` (4-D index tuples
    as int64 arrays); parallel over the three outer box axes."""
    n0, n1, n2, n3 = size[0], size[1], size[2], size[3]
    s0, s1, s2, s3 = src_start[0], src_start[1], src_start[2], src_start[3]
    d0, d1, d2, d3 = dst_start[0], dst_start[1], dst_start[2], dst_start[3]
    for ijk in prange(n0 * n1 * n2):
        i = ijk // (n1 * n2)
        j = (ijk // n2) % n1
        k = ijk % n2
        for m in range(n3):
            dst[d0 + i, d1 + j, d2 + k, d3 + m] = src[s0 + i, s1 + j, s2 + k, s3 + m]


@numba.njit(**JIT)
def _copy_rows(src, dst, rows, width, dst_stride, dst_offset, pieces):
    """dst[r * dst_stride + dst_offset + k] = src[r * width + k] for r < rows, k < width (flat
    arrays): a concat input's rows into their places in the output. Each row is cut into
    `pieces` so a batch of one still spreads over the threads; unsigned flat indexes and
    no view per row let LLVM turn each piece into a vectorized copy."""
    step = (width + pieces - 1) // pieces
    for task in prange(rows * pieces):
        r, piece = task // pieces, task % pieces
        lo = piece * step
        hi = min(width, lo + step)
        s0 = uint64(r * width)
        d0 = uint64(r * dst_stride + dst_offset)
        for k in range(lo, hi):
            dst[d0 + uint64(k)] = src[s0 + uint64(k)]


# A row of at least this many elements is cut into pieces when the rows are fewer than
# the threads (a batch of one); smaller ones are not worth a task each.
MIN_PIECE = 4096


def _flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1)


def _lead(values: tuple[int, ...], fill: int, rank: int = 4) -> np.ndarray:
    return np.array((fill,) * (rank - len(values)) + tuple(values), dtype=np.int64)


def copy_box(src: np.ndarray, dst: np.ndarray, src_start: tuple[int, ...],
             dst_start: tuple[int, ...], size: tuple[int, ...]) -> None:
    """Copy src[src_start : src_start + size] into dst[dst_start : dst_start + size]
    (src and dst have the same rank; C-contiguous)."""
    if 0 in size:
        return
    if src.ndim <= 4:
        launch(_copy_box, src.reshape(tuple(_lead(src.shape, 1))),
               dst.reshape(tuple(_lead(dst.shape, 1))),
               _lead(src_start, 0), _lead(dst_start, 0), _lead(size, 1))
    else:  # rank > 4 (rare): one vectorized NumPy copy, no Python loop per element
        dst[tuple(slice(d, d + n) for d, n in zip(dst_start, size))] = \
            src[tuple(slice(s, s + n) for s, n in zip(src_start, size))]


@cpu_kernel("reshape", "flatten")
def reshape_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    launch(_copy_flat, _flat(ins[0]), _flat(outs[0]))


@cpu_kernel("concat")
def concat_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    out, axis = outs[0], attrs["axis"]
    # Every input and the output as (outer, size along axis, inner): rank 3 for any rank.
    outer = math.prod(out.shape[:axis])
    inner = math.prod(out.shape[axis + 1:])
    flat, stride = _flat(out), out.shape[axis] * inner
    threads = numba.get_num_threads()
    offset = 0
    for x in ins:
        width = x.shape[axis] * inner   # each outer index's elements of x: one run
        if width:
            pieces = max(1, min(-(-threads // max(outer, 1)), width // MIN_PIECE))
            launch(_copy_rows, _flat(np.ascontiguousarray(x)), flat, outer, width, stride,
                   offset, pieces)
        offset += width


@cpu_kernel("pad")
def pad_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    x, out = ins[0], outs[0]
    launch(_fill_flat, _flat(out), out.dtype.type(attrs["value"]))
    copy_box(x, out, (0,) * x.ndim, tuple(b for b, _ in attrs["pads"]), x.shape)


@cpu_kernel("slice")
def slice_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    out = outs[0]
    copy_box(ins[0], out, attrs["starts"], (0,) * out.ndim, out.shape)
