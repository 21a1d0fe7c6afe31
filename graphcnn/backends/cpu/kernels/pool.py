"""Pooling kernels, parallel over (n, c) planes; each follows the reference's PyTorch
semantics exactly (see graphcnn/ops/pool.py)."""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange

from graphcnn.backends.cpu.kernels.window import col_range, max_row
from graphcnn.backends.cpu.registry import JIT, cpu_kernel, launch


@numba.njit(inline="always")
def _argmax_in_window(x, n, c, oy, ox, kh, kw, sh, sw, ph, pw, dh, dw):
    """(value, row, col) of the first maximum of one window; row -1 if it saw no input."""
    in_h, in_w = x.shape[2], x.shape[3]
    best, by, bx = -np.inf, -1, -1
    for i in range(kh):
        iy = oy * sh - ph + i * dh
        if iy < 0 or iy >= in_h:
            continue
        for j in range(kw):
            ix = ox * sw - pw + j * dw
            if ix < 0 or ix >= in_w:
                continue
            v = x[n, c, iy, ix]
            if v > best or by < 0:
                best, by, bx = v, iy, ix
    return best, by, bx


@numba.njit(cache=True, nogil=True)
def max_pool2d_task(task, x, out, kh, kw, sh, sw, ph, pw, dh, dw):
    """One output plane out[n, c], task = n * C + c."""
    # Row at a time: for each kernel tap, one max over the output row (no per-element
    # window search or bounds test; every window holds at least one input element).
    c_len, in_h, in_w = x.shape[1], x.shape[2], x.shape[3]
    ow_len = out.shape[3]
    n, c = task // c_len, task % c_len
    for oy in range(out.shape[2]):
        orow = out[n, c, oy]
        for ox in range(ow_len):
            orow[ox] = -np.inf
        for i in range(kh):
            iy = oy * sh - ph + i * dh
            if iy < 0 or iy >= in_h:
                continue
            xrow = x[n, c, iy]
            for j in range(kw):
                off_x = j * dw - pw
                lo, hi = col_range(off_x, sw, in_w, ow_len)
                max_row(orow, lo, xrow, lo * sw + off_x, sw, hi - lo)


@numba.njit(**JIT)
def _max_pool2d(x, out, kh, kw, sh, sw, ph, pw, dh, dw):
    for task in prange(x.shape[0] * x.shape[1]):
        max_pool2d_task(task, x, out, kh, kw, sh, sw, ph, pw, dh, dw)


@numba.njit(cache=True, nogil=True)
def max_pool2d_grad_task(task, dy, x, dx, kh, kw, sh, sw, ph, pw, dh, dw):
    """One input-gradient plane dx[n, c], task = n * C + c."""
    c_len, in_h, in_w = x.shape[1], x.shape[2], x.shape[3]
    n, c = task // c_len, task % c_len
    for y in range(in_h):
        for xx in range(in_w):
            dx[n, c, y, xx] = 0
    for oy in range(dy.shape[2]):
        for ox in range(dy.shape[3]):
            _, by, bx = _argmax_in_window(x, n, c, oy, ox, kh, kw, sh, sw, ph, pw, dh, dw)
            if by >= 0:
                dx[n, c, by, bx] += dy[n, c, oy, ox]


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


@numba.njit(cache=True, nogil=True)
def avg_pool2d_task(task, x, out, kh, kw, sh, sw, ph, pw, include_pad):
    """One output plane out[n, c], task = n * C + c."""
    c_len, in_h, in_w = x.shape[1], x.shape[2], x.shape[3]
    n, c = task // c_len, task % c_len
    for oy in range(out.shape[2]):
        y0, y1, cy = _avg_window(oy * sh - ph, kh, in_h, ph, include_pad)
        for ox in range(out.shape[3]):
            x0, x1, cx = _avg_window(ox * sw - pw, kw, in_w, pw, include_pad)
            total = 0.0
            for iy in range(y0, y1):
                for ix in range(x0, x1):
                    total += x[n, c, iy, ix]
            out[n, c, oy, ox] = total / (cy * cx)


@numba.njit(**JIT)
def _avg_pool2d(x, out, kh, kw, sh, sw, ph, pw, include_pad):
    for task in prange(x.shape[0] * x.shape[1]):
        avg_pool2d_task(task, x, out, kh, kw, sh, sw, ph, pw, include_pad)


@numba.njit(cache=True, nogil=True)
def avg_pool2d_grad_task(task, dy, dx, kh, kw, sh, sw, ph, pw, include_pad):
    """One input-gradient plane dx[n, c], task = n * C + c."""
    c_len, in_h, in_w = dx.shape[1], dx.shape[2], dx.shape[3]
    n, c = task // c_len, task % c_len
    for y in range(in_h):
        for xx in range(in_w):
            dx[n, c, y, xx] = 0
    for oy in range(dy.shape[2]):
        y0, y1, cy = _avg_window(oy * sh - ph, kh, in_h, ph, include_pad)
        for ox in range(dy.shape[3]):
            x0, x1, cx = _avg_window(ox * sw - pw, kw, in_w, pw, include_pad)
            share = dy[n, c, oy, ox] / (cy * cx)
            for iy in range(y0, y1):
                for ix in range(x0, x1):
                    dx[n, c, iy, ix] += share


@numba.njit(**JIT)
def _avg_pool2d_grad(dy, dx, kh, kw, sh, sw, ph, pw, include_pad):
    for task in prange(dx.shape[0] * dx.shape[1]):
        avg_pool2d_grad_task(task, dy, dx, kh, kw, sh, sw, ph, pw, include_pad)


@numba.njit(**JIT)
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


@cpu_kernel("max_pool2d")
def max_pool2d_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    launch(_max_pool2d, *max_pool2d_args(ins, outs[0], attrs))


@cpu_kernel("max_pool2d_grad")
def max_pool2d_grad_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                           attrs: dict[str, Any]) -> None:
    launch(_max_pool2d_grad, *max_pool2d_grad_args(ins, outs[0], attrs))


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
