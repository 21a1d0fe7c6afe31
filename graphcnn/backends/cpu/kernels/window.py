"""Index arithmetic shared by the sliding-window kernels."""
from __future__ import annotations

import numba
from numba import uint64


@numba.njit(inline="always")
def col_range(off: int, stride: int, in_len: int, out_len: int) -> tuple[int, int]:
    """Output columns ox with 0 <= ox * stride + off < in_len: the kernels loop over these
    without a bounds test per element."""
    lo = max(0, (-off + stride - 1) // stride)
    hi = min(out_len, (in_len - 1 - off) // stride + 1) if in_len - 1 - off >= 0 else 0
    return lo, hi


# Row primitives over flat (1-d, C-contiguous) buffers, at element offsets. Callers flatten
# a buffer once per task and pass offsets, never a view per row: creating a view updates
# the buffer's reference count atomically, and two threads doing that per row fight over
# one cache line (an im2col went 3x faster without). Indices are unsigned, so Numba adds
# no negative-index test and LLVM vectorizes the unit-stride loops.

@numba.njit(inline="always")
def axpy(dst, d0, dstep, src, s0, sstep, count, alpha):
    """dst[d0 + k*dstep] += alpha * src[s0 + k*sstep] for k < count."""
    if dstep == 1 and sstep == 1:
        for k in range(count):
            dst[uint64(d0 + k)] += alpha * src[uint64(s0 + k)]
    else:
        for k in range(count):
            dst[uint64(d0 + k * dstep)] += alpha * src[uint64(s0 + k * sstep)]


@numba.njit(inline="always")
def dot(a, a0, b, b0, bstep, count):
    """sum(a[a0 + k] * b[b0 + k*bstep] for k < count), accumulated in float64."""
    total = 0.0
    if bstep == 1:
        for k in range(count):
            total += a[uint64(a0 + k)] * b[uint64(b0 + k)]
    else:
        for k in range(count):
            total += a[uint64(a0 + k)] * b[uint64(b0 + k * bstep)]
    return total


@numba.njit(inline="always")
def fill(dst, d0, count, value):
    """dst[d0 + k] = value for k < count."""
    for k in range(count):
        dst[uint64(d0 + k)] = value
