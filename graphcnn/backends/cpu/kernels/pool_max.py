"""The max_pool2d inference kernel for undilated windows: separable, rows then columns.

A k x k window maximum is the maximum over its k rows of each row's k-tap maximum. Each
input row is reduced once, across, into a scratch plane `h` (one row of output width per
input row), and each output row is then the element-wise maximum of kh rows of `h`:
2 + 2 compares per output for a 3x3 window at stride 1 instead of 8, and every inner loop
runs over contiguous (or, at stride 2, evenly strided) elements that LLVM vectorizes. The
columns whose window hangs over the padding are done apart, a few per row.

Rows first, then columns, keeps the reference's tie rule bit for bit: among equal values
(+0.0 and -0.0) the first in scan order wins, i.e. the top row's leftmost; each row keeps
its leftmost (`a if a >= b else b`, one vmaxps), then the top row wins (`h` first).

The fast loops use plain compares, which may drop a NaN: a plane with a NaN is pooled by
pool.py's NaN-aware loop instead (one vectorized check per plane; see pool._has_nan).
Threads take contiguous runs of (n, c) planes and allocate their scratch once per run: at
batch 1 (GoogLeNet's 832 planes of 7x7) a per-plane allocation or view costs as much as
the pooling."""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu.kernels.pool import (
    _has_nan,
    _max_pool2d,
    max_pool2d_args,
    max_pool2d_nan_task,
)
from graphcnn.backends.cpu.kernels.window import col_range
from graphcnn.backends.cpu.registry import JIT, TASK_JIT, cpu_kernel, launch


@numba.njit(inline="always")
def _mx(a, b):
    """max(a, b), `a` winning ties. Written as x86's maxps(b, a) is defined (`b > a ? b :
    a`), so that LLVM emits that one instruction; `a if a >= b else b`, which differs from
    it for NaN only, costs a compare and a blend. (No NaN reaches it.)"""
    return b if b > a else a


@numba.njit(inline="always")
def _across(xf, src, hf, dst, lo, hi, sw, kw):
    """hf[dst + ox] = max(xf[src + ox*sw + j] for j < kw) for lo <= ox < hi (whole windows).
    The common windows get a loop of their own with a constant stride, which LLVM
    vectorizes (a symbolic stride it would only version for stride 1)."""
    if kw == 3 and sw == 1:
        for ox in range(lo, hi):
            p = src + ox
            hf[uint64(dst + ox)] = _mx(_mx(xf[uint64(p)], xf[uint64(p + 1)]), xf[uint64(p + 2)])
    elif kw == 3 and sw == 2:
        for ox in range(lo, hi):
            p = src + 2 * ox
            hf[uint64(dst + ox)] = _mx(_mx(xf[uint64(p)], xf[uint64(p + 1)]), xf[uint64(p + 2)])
    elif kw == 2 and sw == 2:
        for ox in range(lo, hi):
            p = src + 2 * ox
            hf[uint64(dst + ox)] = _mx(xf[uint64(p)], xf[uint64(p + 1)])
    else:
        for ox in range(lo, hi):
            p = src + ox * sw
            m = xf[uint64(p)]
            for j in range(1, kw):
                m = _mx(m, xf[uint64(p + j)])
            hf[uint64(dst + ox)] = m


@numba.njit(inline="always")
def _across_clipped(xf, hf, r0, r1, first, stop, sw, pw, kw, in_w, ow, k0):
    """_across for the columns first..stop-1 of rows r0..r1-1, whose windows hang over the
    padding: a column at a time down the rows, as the clipped taps are the same in each
    (a call per row and side cost more than the flat loop itself on 7x7 planes)."""
    for ox in range(first, stop):
        jlo, jhi = col_range(ox * sw - pw, 1, in_w, kw)
        src, dst = ox * sw - pw + jlo, ox - k0
        if jhi - jlo == 2:
            for r in range(r0, r1):
                p = src + r * in_w
                hf[uint64(dst + r * ow)] = _mx(xf[uint64(p)], xf[uint64(p + 1)])
        elif jhi - jlo == 1:
            for r in range(r0, r1):
                hf[uint64(dst + r * ow)] = xf[uint64(src + r * in_w)]
        elif jhi > jlo:
            for r in range(r0, r1):
                p = src + r * in_w
                m = xf[uint64(p)]
                for j in range(1, jhi - jlo):
                    m = _mx(m, xf[uint64(p + j)])
                hf[uint64(dst + r * ow)] = m
        else:  # no tap inside (none under the shape rule's limits)
            for r in range(r0, r1):
                hf[uint64(dst + r * ow)] = -np.inf


@numba.njit(inline="always")
def _down(hf, top, rows, count, ow, of, dst):
    """of[dst + q] = max(hf[top + i*ow + q] for i < rows) for q < count (count > ow: the
    next output rows, at stride 1), the top row winning ties."""
    if rows == 3:
        for q in range(count):
            p = top + q
            of[uint64(dst + q)] = _mx(_mx(hf[uint64(p)], hf[uint64(p + ow)]),
                                      hf[uint64(p + 2 * ow)])
    elif rows == 2:
        for q in range(count):
            p = top + q
            of[uint64(dst + q)] = _mx(hf[uint64(p)], hf[uint64(p + ow)])
    else:
        for q in range(count):
            of[uint64(dst + q)] = hf[uint64(top + q)]
        for i in range(1, rows):
            for q in range(count):
                v = of[uint64(dst + q)]
                of[uint64(dst + q)] = _mx(v, hf[uint64(top + i * ow + q)])


@numba.njit(**TASK_JIT)
def _pool_planes(xf, h, of, t0, t1, in_h, in_w, oh, ow, kh, kw, sh, sw, ph, pw, lo, hi):
    """Planes t0..t1-1, their across maxima in h (from h[0])."""
    k0 = t0 * in_h * ow
    if in_w == sw * ow:
        # Output column k of the block (row-major over its rows) starts its window at
        # input element sw*k - pw: one flat loop over the block, rows joined. The columns
        # whose windows cross a row's end read the next row there; they are redone below.
        k1 = t1 * in_h * ow
        _across(xf, -pw, h, -k0, k0 + lo, k1 - (ow - hi), sw, kw)
    else:
        for r in range(t0 * in_h, t1 * in_h):
            _across(xf, r * in_w - pw, h, r * ow - k0, lo, hi, sw, kw)
    _across_clipped(xf, h, t0 * in_h, t1 * in_h, 0, lo, sw, pw, kw, in_w, ow, k0)
    _across_clipped(xf, h, t0 * in_h, t1 * in_h, hi, ow, sw, pw, kw, in_w, ow, k0)
    ylo, yhi = col_range(-ph, sh, in_h - kh + 1, oh)  # the rows with whole windows
    yhi = max(ylo, yhi)
    for t in range(t0, t1):
        top, o0 = (t - t0) * in_h * ow, t * oh * ow
        if sh == 1 and yhi > ylo:  # those rows' windows are one flat run of h
            _down(h, top + (ylo - ph) * ow, kh, ow * (yhi - ylo), ow, of, o0 + ylo * ow)
        else:
            for oy in range(ylo, yhi):
                _down(h, top + (oy * sh - ph) * ow, kh, ow, ow, of, o0 + oy * ow)
        for oy in range(oh):
            if ylo <= oy < yhi:
                continue
            ilo, ihi = col_range(oy * sh - ph, 1, in_h, kh)
            if ilo < ihi:
                _down(h, top + (oy * sh - ph + ilo) * ow, ihi - ilo, ow, ow, of, o0 + oy * ow)
            else:  # a window of padding only (none under the shape rule's limits)
                for ox in range(ow):
                    of[uint64(o0 + oy * ow + ox)] = -np.inf


@numba.njit(**JIT)
def _max_pool2d_separable(x, out, kh, kw, sh, sw, ph, pw, runs, block):
    """`runs` contiguous runs of planes (one per thread), pooled `block` planes at once.
    _pool_planes is a function of its own, called from one place: inlined at each of
    two calls, its loops' many variants took LLVM about 50 s to compile."""
    planes, in_h, in_w = x.shape[0] * x.shape[1], x.shape[2], x.shape[3]
    oh, ow = out.shape[2], out.shape[3]
    xf, of = x.reshape(x.size), out.reshape(out.size)
    lo, hi = col_range(-pw, sw, in_w - kw + 1, ow)  # the columns with whole windows
    hi = max(lo, hi)
    for run in prange(runs):
        h = np.empty(block * in_h * ow, x.dtype)
        stop = (run + 1) * planes // runs
        for t0 in range(run * planes // runs, stop, block):
            t1 = min(t0 + block, stop)
            # A block with a NaN goes a plane at a time, its planes with a NaN to the
            # NaN-aware loop.
            nan = _has_nan(xf, t0 * in_h * in_w, (t1 - t0) * in_h * in_w)
            t = t0
            while t < t1:
                if nan and _has_nan(xf, t * in_h * in_w, in_h * in_w):
                    max_pool2d_nan_task(t, x, out, kh, kw, sh, sw, ph, pw, 1, 1)
                    t += 1
                    continue
                t_end = t + 1 if nan else t1
                _pool_planes(xf, h, of, t, t_end, in_h, in_w, oh, ow, kh, kw, sh, sw, ph, pw,
                             lo, hi)
                t = t_end


# The scratch rows of one block of planes: 16 KiB of float32, within L1 with the block's
# input streaming through.
_BLOCK_ELEMENTS = 4096


@cpu_kernel("max_pool2d")
def max_pool2d_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    args = max_pool2d_args(ins, outs[0], attrs)
    if tuple(attrs["dilation"]) == (1, 1):
        x, out = ins[0], outs[0]
        runs = max(1, min(x.shape[0] * x.shape[1], numba.get_num_threads()))
        block = max(1, _BLOCK_ELEMENTS // (x.shape[2] * out.shape[3]))
        launch(_max_pool2d_separable, *args[:8], runs, block)
    else:
        launch(_max_pool2d, *args)
