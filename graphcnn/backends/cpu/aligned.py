"""Arrays whose first byte is on a cache-line boundary (memory_plan.ALIGN, 64 bytes).

NumPy aligns a large array's data to 16 bytes only (its buffer comes from malloc, whose
large blocks start 16 bytes into a page), so a 64-byte vector load from it spans two cache
lines, and a 16-lane AVX-512 microkernel that loads its packed weights so (one load per
16 multiply-adds of a panel) pays a split load at every one: the channels-in-lanes product
ran 12-15% slower on one core, 11-17% on two, from weights 16 bytes off the line (Xeon
8592, benchmarks/RESULTS.md, sixth session). The kernels' own buffers (packed and
transformed weights, the workspaces, the arena) come from here.

    >>> aligned_empty((3, 5), np.float32).ctypes.data % ALIGN
    0
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphcnn.runtime.memory_plan import ALIGN


def aligned_bytes(nbytes: int) -> np.ndarray:
    """A uint8 array of `nbytes` whose start is ALIGN-aligned (a view into a larger one)."""
    raw = np.empty(nbytes + ALIGN, np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    return raw[start:start + nbytes]


def aligned_empty(shape: int | tuple[int, ...], dtype: Any) -> np.ndarray:
    """np.empty(shape, dtype), C-contiguous, its data ALIGN-aligned."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    dtype = np.dtype(dtype)
    return aligned_bytes(math.prod(shape) * dtype.itemsize).view(dtype).reshape(shape)


def aligned_zeros(shape: int | tuple[int, ...], dtype: Any) -> np.ndarray:
    """np.zeros(shape, dtype), C-contiguous, its data ALIGN-aligned."""
    out = aligned_empty(shape, dtype)
    out[...] = 0
    return out
