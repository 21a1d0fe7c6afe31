"""Index arithmetic shared by the sliding-window kernels."""
from __future__ import annotations

import numba


@numba.njit(cache=True, nogil=True)
def col_range(off: int, stride: int, in_len: int, out_len: int) -> tuple[int, int]:
    """Output columns ox with 0 <= ox * stride + off < in_len: the kernels loop over these
    without a bounds test per element."""
    lo = max(0, (-off + stride - 1) // stride)
    hi = min(out_len, (in_len - 1 - off) // stride + 1) if in_len - 1 - off >= 0 else 0
    return lo, hi


# Row primitives. Every start is >= 0 by construction; indexing slices with a loop counter
# that starts at 0 lets LLVM prove no index is negative, drop Numba's wraparound test and
# vectorize the unit-stride case (a 5x difference on LeNet's first convolution).

@numba.njit(inline="always")
def axpy(dst, d0, dstep, src, s0, sstep, count, alpha):
    """dst[d0 + k*dstep] += alpha * src[s0 + k*sstep] for k < count."""
    if count <= 0:
        return
    if dstep == 1 and sstep == 1:
        d = dst[d0:d0 + count]
        s = src[s0:s0 + count]
        for k in range(count):
            d[k] += alpha * s[k]
    else:
        d = dst[d0:d0 + (count - 1) * dstep + 1:dstep]
        s = src[s0:s0 + (count - 1) * sstep + 1:sstep]
        for k in range(count):
            d[k] += alpha * s[k]


@numba.njit(inline="always")
def dot(a, a0, b, b0, bstep, count):
    """sum(a[a0 + k] * b[b0 + k*bstep] for k < count), accumulated in float64."""
    total = 0.0
    if count <= 0:
        return total
    x = a[a0:a0 + count]
    if bstep == 1:
        y = b[b0:b0 + count]
        for k in range(count):
            total += x[k] * y[k]
    else:
        y = b[b0:b0 + (count - 1) * bstep + 1:bstep]
        for k in range(count):
            total += x[k] * y[k]
    return total


@numba.njit(inline="always")
def copy_row(dst, d0, src, s0, sstep, count):
    """dst[d0 + k] = src[s0 + k*sstep] for k < count."""
    if count <= 0:
        return
    d = dst[d0:d0 + count]
    if sstep == 1:
        s = src[s0:s0 + count]
        for k in range(count):
            d[k] = s[k]
    else:
        s = src[s0:s0 + (count - 1) * sstep + 1:sstep]
        for k in range(count):
            d[k] = s[k]


@numba.njit(inline="always")
def max_row(dst, d0, src, s0, sstep, count):
    """dst[d0 + k] = max(dst[d0 + k], src[s0 + k*sstep]) for k < count (the first of equal
    values stays, as in the reference)."""
    if count <= 0:
        return
    d = dst[d0:d0 + count]
    s = src[s0:s0 + (count - 1) * sstep + 1:sstep]
    for k in range(count):
        if s[k] > d[k]:
            d[k] = s[k]
