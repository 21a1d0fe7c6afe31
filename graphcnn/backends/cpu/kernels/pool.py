"""Pooling kernels, parallel over (n, c) planes; each follows the reference's PyTorch
semantics exactly (see graphcnn/ops/pool.py)."""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu.kernels.window import col_range, fill
from graphcnn.backends.cpu.registry import JIT, REDUCE_JIT, TASK_JIT, cpu_kernel, launch

# Every kernel here owns one (n, c) plane per task and walks its output element by element,
# over the window taps that land inside the input (col_range gives them, so there is no
# bounds test per tap). The running maximum or sum stays in a register: an earlier version
# that swept whole rows and stored `max(out, x)` back per tap only where x was larger was
# 10-45x slower, its data-dependent store a branch that random data mispredicts half the
# time. (pool_max.py's separable max pool does sweep rows, with selects that LLVM
# vectorizes.) Buffers are flat and indexed by unsigned offsets (see window.py).

@numba.njit(inline="always")
def _inner_range(stride, pad, k, dilation, in_len, out_len):
    """Outputs whose whole window lies inside the input (no tap needs clipping)."""
    first = min(out_len, (pad + stride - 1) // stride)
    span = (k - 1) * dilation  # the window's last tap, from its first
    last = (in_len - 1 - span + pad) // stride + 1 if in_len - 1 - span + pad >= 0 else 0
    return first, max(first, min(out_len, last))


@numba.njit(inline="always")
def _has_nan(xf, start, count):
    """Whether xf[start:start + count] holds a NaN (one vectorized pass).

    The fast loops keep a running maximum with a single compare (one max instruction per
    tap), which drops a NaN. A plane with one is pooled by the *_nan_* functions instead,
    whose selects let NaN win (as PyTorch's and the reference's). Measured single-thread
    on (4, 64, 112, 112), 3x3/2: this check first 2.8 ms, selects that let NaN win in
    the fast loops 3.5 ms, a NaN flag kept in them 3.2 ms, before any NaN handling 2.3 ms
    (benchmarks/float_semantics.py times the compiled ops)."""
    found = False
    for k in range(count):
        v = xf[uint64(start + k)]
        found |= v != v
    return found


@numba.njit(**TASK_JIT)
def max_pool2d_nan_task(task, x, out, kh, kw, sh, sw, ph, pw, dh, dw):
    """max_pool2d_task for a plane with a NaN: a window with a NaN anywhere gives NaN
    (PyTorch's rule, the reference's)."""
    in_h, in_w = x.shape[2], x.shape[3]
    oh_len, ow_len = out.shape[2], out.shape[3]
    xf, of = x.reshape(x.size), out.reshape(out.size)
    x0, out0 = task * in_h * in_w, task * oh_len * ow_len
    for oy in range(oh_len):
        iy0 = oy * sh - ph
        ilo, ihi = col_range(iy0, dh, in_h, kh)
        for ox in range(ow_len):
            ix0 = ox * sw - pw
            jlo, jhi = col_range(ix0, dw, in_w, kw)
            best = -np.inf
            for i in range(ilo, ihi):
                row = x0 + (iy0 + i * dh) * in_w + ix0
                for j in range(jlo, jhi):
                    v = xf[uint64(row + j * dw)]
                    best = v if (v > best) | (v != v) else best
            of[uint64(out0 + oy * ow_len + ox)] = best


@numba.njit(**TASK_JIT)
def max_pool2d_task(task, x, out, kh, kw, sh, sw, ph, pw, dh, dw):
    """One output plane out[n, c], task = n * C + c."""
    in_h, in_w = x.shape[2], x.shape[3]
    oh_len, ow_len = out.shape[2], out.shape[3]
    xf, of = x.reshape(x.size), out.reshape(out.size)
    x0, out0 = task * in_h * in_w, task * oh_len * ow_len
    if _has_nan(xf, x0, in_h * in_w):
        max_pool2d_nan_task(task, x, out, kh, kw, sh, sw, ph, pw, dh, dw)
        return
    inner_lo, inner_hi = _inner_range(sw, pw, kw, dw, in_w, ow_len)
    for oy in range(oh_len):
        iy0 = oy * sh - ph
        ilo, ihi = col_range(iy0, dh, in_h, kh)
        for ox in range(ow_len):
            ix0 = ox * sw - pw
            if inner_lo <= ox < inner_hi:  # the common case: all kw taps in the row
                jlo, jhi = 0, kw
            else:
                jlo, jhi = col_range(ix0, dw, in_w, kw)
            best = -np.inf
            for i in range(ilo, ihi):
                row = x0 + (iy0 + i * dh) * in_w + ix0
                for j in range(jlo, jhi):
                    v = xf[uint64(row + j * dw)]
                    best = v if v > best else best
            of[uint64(out0 + oy * ow_len + ox)] = best


@numba.njit(**JIT)
def _max_pool2d(x, out, kh, kw, sh, sw, ph, pw, dh, dw):
    """Dilated windows (undilated ones take pool_max.py's separable kernel)."""
    for task in prange(x.shape[0] * x.shape[1]):
        max_pool2d_task(task, x, out, kh, kw, sh, sw, ph, pw, dh, dw)


@numba.njit(**TASK_JIT)
def _max_pool2d_grad_nan_plane(dyf, xf, dxf, x0, dy0, in_h, in_w, oh_len, ow_len, kh, kw,
                               sh, sw, ph, pw, dh, dw):
    """max_pool2d_grad_task's loop for a plane with a NaN: the gradient of a window with
    a NaN goes to its last NaN (PyTorch's argmax, the reference's)."""
    for oy in range(oh_len):
        iy0 = oy * sh - ph
        ilo, ihi = col_range(iy0, dh, in_h, kh)
        for ox in range(ow_len):
            ix0 = ox * sw - pw
            jlo, jhi = col_range(ix0, dw, in_w, kw)
            if ilo >= ihi or jlo >= jhi:
                continue
            at = x0 + (iy0 + ilo * dh) * in_w + ix0 + jlo * dw
            best = xf[uint64(at)]
            for i in range(ilo, ihi):
                row = x0 + (iy0 + i * dh) * in_w + ix0
                for j in range(jlo, jhi):
                    v = xf[uint64(row + j * dw)]
                    greater = (v > best) | (v != v)
                    best = v if greater else best
                    at = row + j * dw if greater else at
            dxf[uint64(at)] += dyf[uint64(dy0 + oy * ow_len + ox)]


@numba.njit(**TASK_JIT)
def max_pool2d_grad_task(task, dy, x, dx, kh, kw, sh, sw, ph, pw, dh, dw):
    """One input-gradient plane dx[n, c], task = n * C + c: each output's gradient goes to
    the first maximum of its window, or its last NaN (the reference's rule, PyTorch's)."""
    in_h, in_w = x.shape[2], x.shape[3]
    oh_len, ow_len = dy.shape[2], dy.shape[3]
    xf, dxf, dyf = x.reshape(x.size), dx.reshape(dx.size), dy.reshape(dy.size)
    x0, dy0 = task * in_h * in_w, task * oh_len * ow_len
    fill(dxf, x0, in_h * in_w, 0.0)
    if _has_nan(xf, x0, in_h * in_w):  # the slower selects that let a NaN win
        _max_pool2d_grad_nan_plane(dyf, xf, dxf, x0, dy0, in_h, in_w, oh_len, ow_len,
                                   kh, kw, sh, sw, ph, pw, dh, dw)
        return
    for oy in range(oh_len):
        iy0 = oy * sh - ph
        ilo, ihi = col_range(iy0, dh, in_h, kh)
        for ox in range(ow_len):
            ix0 = ox * sw - pw
            jlo, jhi = col_range(ix0, dw, in_w, kw)
            if ilo >= ihi or jlo >= jhi:
                continue  # a window of padding only: no input gets this gradient
            # The first tap, then a strictly greater one: the first maximum. Selects, not
            # branches: random data would mispredict a branch on every other tap.
            at = x0 + (iy0 + ilo * dh) * in_w + ix0 + jlo * dw
            best = xf[uint64(at)]
            for i in range(ilo, ihi):
                row = x0 + (iy0 + i * dh) * in_w + ix0
                for j in range(jlo, jhi):
                    v = xf[uint64(row + j * dw)]
                    greater = v > best
                    best = v if greater else best
                    at = row + j * dw if greater else at
            dxf[uint64(at)] += dyf[uint64(dy0 + oy * ow_len + ox)]


@numba.njit(**JIT)
def _max_pool2d_grad(dy, x, dx, kh, kw, sh, sw, ph, pw, dh, dw):
    for task in prange(x.shape[0] * x.shape[1]):
        max_pool2d_grad_task(task, dy, x, dx, kh, kw, sh, sw, ph, pw, dh, dw)


@numba.njit(inline="always")
def _avg_window(start, k, size, pad, include_pad):
    """(first, last+1, divisor part) of one window axis, PyTorch's rule."""
    end = min(start + k, size + pad)
    count = end - start
    first, stop = max(start, 0), min(end, size)
    if not include_pad:
        count = stop - first
    return first, stop, count


@numba.njit(inline="always")
def avg_pool2d_task(task, xf, of, in_h, in_w, oh_len, ow_len, kh, kw, sh, sw, ph, pw,
                    include_pad):
    """One output plane out[n, c], task = n * C + c, of the flat x and out. Inlined into
    the task loop, with the arrays made flat once: a view or a call per plane is an atomic
    reference-count update that the threads fight over."""
    x0, out0 = task * in_h * in_w, task * oh_len * ow_len
    for oy in range(oh_len):
        y0, y1, cy = _avg_window(oy * sh - ph, kh, in_h, ph, include_pad)
        for ox in range(ow_len):
            xa, xb, cx = _avg_window(ox * sw - pw, kw, in_w, pw, include_pad)
            total = 0.0
            for iy in range(y0, y1):
                row = x0 + iy * in_w
                for ix in range(xa, xb):
                    total += xf[uint64(row + ix)]
            of[uint64(out0 + oy * ow_len + ox)] = total / (cy * cx)


@numba.njit(inline="always")
def avg_pool2d_2x2_task(task, xf, of, in_h, in_w, oh_len, ow_len):
    """One output plane of an unpadded 2x2, stride-2 pool (DenseNet's transitions): the
    generic task's sums in its order (top row, then bottom; float64), in straight-line
    code LLVM vectorizes, instead of a window loop per output."""
    x0, out0 = task * in_h * in_w, task * oh_len * ow_len
    for oy in range(oh_len):
        top = x0 + 2 * oy * in_w
        bottom = top + in_w
        row = out0 + oy * ow_len
        for ox in range(ow_len):
            total = 0.0
            total += xf[uint64(top + 2 * ox)]
            total += xf[uint64(top + 2 * ox + 1)]
            total += xf[uint64(bottom + 2 * ox)]
            total += xf[uint64(bottom + 2 * ox + 1)]
            of[uint64(row + ox)] = total / 4.0


@numba.njit(**JIT)
def _avg_pool2d(x, out, kh, kw, sh, sw, ph, pw, include_pad):
    # (floor mode: a ceil-mode pool's last, partial window takes the generic task)
    in_h, in_w, oh_len, ow_len = x.shape[2], x.shape[3], out.shape[2], out.shape[3]
    pairs = (kh == 2 and kw == 2 and sh == 2 and sw == 2 and ph == 0 and pw == 0
             and 2 * oh_len <= in_h and 2 * ow_len <= in_w)
    xf, of = x.reshape(x.size), out.reshape(out.size)
    for task in prange(x.shape[0] * x.shape[1]):
        if pairs:
            avg_pool2d_2x2_task(task, xf, of, in_h, in_w, oh_len, ow_len)
        else:
            avg_pool2d_task(task, xf, of, in_h, in_w, oh_len, ow_len, kh, kw, sh, sw, ph, pw,
                            include_pad)


@numba.njit(**TASK_JIT)
def avg_pool2d_grad_task(task, dy, dx, kh, kw, sh, sw, ph, pw, include_pad):
    """One input-gradient plane dx[n, c], task = n * C + c."""
    in_h, in_w = dx.shape[2], dx.shape[3]
    oh_len, ow_len = dy.shape[2], dy.shape[3]
    dxf, dyf = dx.reshape(dx.size), dy.reshape(dy.size)
    x0, dy0 = task * in_h * in_w, task * oh_len * ow_len
    fill(dxf, x0, in_h * in_w, 0.0)
    for oy in range(oh_len):
        y0, y1, cy = _avg_window(oy * sh - ph, kh, in_h, ph, include_pad)
        for ox in range(ow_len):
            xa, xb, cx = _avg_window(ox * sw - pw, kw, in_w, pw, include_pad)
            share = dyf[uint64(dy0 + oy * ow_len + ox)] / (cy * cx)
            for iy in range(y0, y1):
                row = x0 + iy * in_w
                for ix in range(xa, xb):
                    dxf[uint64(row + ix)] += share


@numba.njit(**JIT)
def _avg_pool2d_grad(dy, dx, kh, kw, sh, sw, ph, pw, include_pad):
    for task in prange(dx.shape[0] * dx.shape[1]):
        avg_pool2d_grad_task(task, dy, dx, kh, kw, sh, sw, ph, pw, include_pad)


@numba.njit(**REDUCE_JIT)
def _global_avg_pool2d(x, out):
    n_len, c_len, in_h, in_w = x.shape
    for task in prange(n_len * c_len):
        n, c = task // c_len, task % c_len
        total = 0.0
        for y in range(in_h):
            for xx in range(in_w):
                total += x[n, c, y, xx]
        out[n, c, 0, 0] = total / (in_h * in_w)


def _window(attrs: dict[str, Any]) -> tuple[int, ...]:
    (kh, kw), (sh, sw), (ph, pw) = attrs["kernel_size"], attrs["stride"], attrs["padding"]
    return (kh, kw, sh, sw, ph, pw)


def max_pool2d_args(ins: list[np.ndarray], out: np.ndarray, attrs: dict[str, Any]) -> tuple:
    """The arguments of max_pool2d_task after `task` (also used by fused kernels)."""
    return (ins[0], out) + _window(attrs) + tuple(attrs["dilation"])


def avg_pool2d_args(ins: list[np.ndarray], out: np.ndarray, attrs: dict[str, Any]) -> tuple:
    return (ins[0], out) + _window(attrs) + (attrs["count_include_pad"],)


def max_pool2d_grad_args(ins: list[np.ndarray], out: np.ndarray, attrs: dict[str, Any]
                         ) -> tuple:
    return (ins[0], ins[1], out) + _window(attrs) + tuple(attrs["dilation"])


def avg_pool2d_grad_args(ins: list[np.ndarray], out: np.ndarray, attrs: dict[str, Any]
                         ) -> tuple:
    return (ins[0], out) + _window(attrs) + (attrs["count_include_pad"],)


@cpu_kernel("avg_pool2d")
def avg_pool2d_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    launch(_avg_pool2d, *avg_pool2d_args(ins, outs[0], attrs))


@cpu_kernel("avg_pool2d_grad")
def avg_pool2d_grad_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                           attrs: dict[str, Any]) -> None:
    launch(_avg_pool2d_grad, *avg_pool2d_grad_args(ins, outs[0], attrs))


@cpu_kernel("global_avg_pool2d")
def global_avg_pool2d_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                             attrs: dict[str, Any]) -> None:
    launch(_global_avg_pool2d, ins[0], outs[0])
