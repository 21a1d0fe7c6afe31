"""The max_pool2d_grad kernel for undilated windows: each window's gradient goes to its
first maximum (the reference's and PyTorch's pick), found for a whole output row of 3x3
windows at once, in vector lanes.

A 3x3 window that lies wholly inside the input (all but the border columns and rows) is
nine taps in straight-line code: a load, a strict compare and two selects each, in the
reference's scan order (window row, then column). Written per window with the output
column as the loop (at stride 1 or 2, constant), LLVM vectorizes it across windows; the
border windows, other window sizes and strides take the clipped per-window loop. Then a
short scalar loop adds dy's row at the chosen offsets (windows overlap, so that part
stays scalar). pool.py's max_pool2d_grad_task (one window at a time, each tap through a
loop) stays for dilated windows and planes with a NaN (where NaN wins). ResNet's stem
pool at batch 16 (3x3/2 over 16 x 64 x 112 x 112): 28 -> 18 ms, GoogLeNet-sized 3x3/1
(16 x 192 x 28 x 28): 31 -> 10 ms, on 2 threads (the two kernels in turns, one process).
A fused relu_grad after it (ResNet's stem, backwards) is applied to each plane as it is
written, in cache, not in a pass of its own over the whole gradient: 16 x 64 x 112 x 112,
15.3 -> 12.0 ms (the same way).
"""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu.kernels.grad_mask import relu_mask_after, relu_mask_plane
from graphcnn.backends.cpu.kernels.pool import (
    _has_nan,
    _max_pool2d_grad,
    max_pool2d_grad_args,
    max_pool2d_grad_task,
)
from graphcnn.backends.cpu.kernels.window import col_range, fill
from graphcnn.backends.cpu.registry import JIT, TASK_JIT, cpu_kernel, launch


@numba.njit(inline="always")
def _first_max(xf, b, a, q):
    """(maximum, its offset) after the tap at xf[q]: it replaces the window's maximum b at
    a only if strictly greater (the first maximum wins)."""
    v = xf[uint64(q)]
    take = v > b
    return (v if take else b), (q if take else a)


@numba.njit(inline="always")
def _argmax3(xf, p, w):
    """The offset of the first maximum of the 3x3 window whose top-left tap is xf[p],
    rows `w` apart: straight-line selects, which LLVM vectorizes across windows."""
    b, a = xf[uint64(p)], p
    b, a = _first_max(xf, b, a, p + 1)
    b, a = _first_max(xf, b, a, p + 2)
    b, a = _first_max(xf, b, a, p + w)
    b, a = _first_max(xf, b, a, p + w + 1)
    b, a = _first_max(xf, b, a, p + w + 2)
    b, a = _first_max(xf, b, a, p + 2 * w)
    b, a = _first_max(xf, b, a, p + 2 * w + 1)
    b, a = _first_max(xf, b, a, p + 2 * w + 2)
    return a


@numba.njit(inline="always")
def _argmax3_row(xf, row0, at, lo, hi, sw, w):
    """at[ox] for the whole 3x3 windows lo <= ox < hi of one output row, the first
    starting at xf[row0 + lo * sw]. Constant strides get loops of their own: LLVM
    vectorizes those, a symbolic one it would not."""
    if sw == 2:
        for ox in range(lo, hi):
            at[ox] = _argmax3(xf, row0 + 2 * ox, w)
    else:
        for ox in range(lo, hi):
            at[ox] = _argmax3(xf, row0 + ox, w)


@numba.njit(inline="always")
def _argmax(xf, x0, iy0, ilo, ihi, ix0, jlo, jhi, in_w):
    """The offset of the first maximum of a window clipped to taps [ilo, ihi) x [jlo,
    jhi) (-1: a window of padding only)."""
    if ilo >= ihi or jlo >= jhi:
        return -1
    a = x0 + (iy0 + ilo) * in_w + ix0 + jlo
    b = xf[uint64(a)]
    for i in range(ilo, ihi):
        row = x0 + (iy0 + i) * in_w + ix0
        for j in range(jlo, jhi):
            b, a = _first_max(xf, b, a, row + j)
    return a


@numba.njit(**TASK_JIT)
def _grad_plane(xf, dxf, dyf, at, x0, dy0, in_h, in_w, oh, ow, kh, kw, sh, sw, ph, pw, lo,
                hi):
    """One plane without a NaN: each window's first maximum, then its gradient there."""
    vector = kh == 3 and kw == 3 and (sw == 1 or sw == 2)
    fill(dxf, x0, in_h * in_w, 0.0)
    for oy in range(oh):
        iy0 = oy * sh - ph
        ilo, ihi = col_range(iy0, 1, in_h, kh)
        whole_rows = vector and ilo == 0 and ihi == kh
        for ox in range(ow):
            if whole_rows and lo <= ox < hi:
                continue
            ix0 = ox * sw - pw
            jlo, jhi = col_range(ix0, 1, in_w, kw)
            at[ox] = _argmax(xf, x0, iy0, ilo, ihi, ix0, jlo, jhi, in_w)
        if whole_rows:
            _argmax3_row(xf, x0 + iy0 * in_w - pw, at, lo, hi, sw, in_w)
        for ox in range(ow):
            q = at[ox]
            if q >= 0:
                dxf[uint64(q)] += dyf[uint64(dy0 + oy * ow + ox)]


@numba.njit(**JIT)
def _max_pool2d_grad_rows(dy, x, dx, kh, kw, sh, sw, ph, pw, runs, y, masked):
    """`runs` contiguous runs of (n, c) planes, one per thread, each with its own row of
    `at`; a plane with a NaN takes pool.py's loop (NaN wins there). With `masked`, each
    plane then goes through a fused relu_grad by y (x's shape) while it is in cache. The
    plane's work is a function of its own: inlined into the parallel loop it took LLVM
    seconds more."""
    planes, in_h, in_w = x.shape[0] * x.shape[1], x.shape[2], x.shape[3]
    oh, ow = dy.shape[2], dy.shape[3]
    xf, dxf, dyf = x.reshape(x.size), dx.reshape(dx.size), dy.reshape(dy.size)
    yf = y.reshape(y.size)
    lo, hi = col_range(-pw, sw, in_w - kw + 1, ow)  # the columns with whole windows
    hi = max(lo, hi)
    for run in prange(runs):
        at = np.empty(ow, np.int64)
        for t in range(run * planes // runs, (run + 1) * planes // runs):
            x0, dy0 = t * in_h * in_w, t * oh * ow
            if _has_nan(xf, x0, in_h * in_w):
                max_pool2d_grad_task(t, dy, x, dx, kh, kw, sh, sw, ph, pw, 1, 1)
            else:
                _grad_plane(xf, dxf, dyf, at, x0, dy0, in_h, in_w, oh, ow, kh, kw, sh, sw,
                            ph, pw, lo, hi)
            if masked:
                relu_mask_plane(dxf, yf, x0, in_h * in_w)


@cpu_kernel("max_pool2d_grad")
def max_pool2d_grad_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                           attrs: dict[str, Any]) -> None:
    max_pool2d_grad_relu(ins, outs[0], attrs, None)


def max_pool2d_grad_relu(ins: list[np.ndarray], dx: np.ndarray, attrs: dict[str, Any],
                         y: np.ndarray | None) -> None:
    """dx = max_pool2d_grad(dy, x), then relu_grad(dx, y) if y is given (a fused group's,
    ResNet's stem: y is the relu's output, the pool's input), applied to each plane as it
    is written instead of in a pass of its own over the whole gradient."""
    args = max_pool2d_grad_args(ins, dx, attrs)
    masked = y is not None
    # without a mask, a 4-d y all the same (one compiled kernel for both)
    y = np.ascontiguousarray(y, dx.dtype) if masked else np.zeros((1, 1, 1, 1), dx.dtype)
    if tuple(attrs["dilation"]) == (1, 1):
        x = ins[1]
        runs = max(1, min(x.shape[0] * x.shape[1], numba.get_num_threads()))
        launch(_max_pool2d_grad_rows, *args[:9], runs, y, masked)
        return
    launch(_max_pool2d_grad, *args)
    if masked:
        relu_mask_after(dx, y)
