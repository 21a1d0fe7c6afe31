"""Direct convolution kernels: forward (any geometry, and a 'wide' form for stride 1
without padding or dilation), input gradient and weight gradient, in NCHW.

Each parallel task owns one output plane (forward: an (n, o) plane; input gradient: an
(n, c) plane; weight gradient: an (o, c) filter), so no two threads write one element.
The innermost loop runs along the output row over the columns where the kernel tap lands
inside the input, so there is no bounds test per element. They run the convolutions with
too little work per group for a GEMM (conv_gemm.use_gemm: LeNet-5's c1, grouped convs,
the gradients of small layers) and any convolution no faster kernel takes. The register-
tiled kernels are elsewhere: the packed-weights GEMM (packed_gemm.py, implicit_gemm.py),
Winograd (winograd*.py), depthwise 3x3 (depthwise.py) and NCHW16c (nchw16c*.py). Which one
runs a node is backends/cpu/strategy.py's choice, made when the runner is built."""
from __future__ import annotations

import math
from typing import Any, Callable

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu.kernels.window import axpy, dot, fill
from graphcnn.backends.cpu.kernels.window import col_range as _col_range
from graphcnn.backends.cpu.registry import JIT, REDUCE_JIT, TASK_JIT, launch, recording


@numba.njit(**TASK_JIT)
def conv2d_task(task, x, w, bias, has_bias, out, sh, sw, pt, pl, dh, dw, groups):
    """One output plane out[n, o], task = n * O + o."""
    in_h, in_w = x.shape[2], x.shape[3]
    o_len, cg, kh, kw = w.shape
    oh_len, ow_len = out.shape[2], out.shape[3]
    n, o = task // o_len, task % o_len
    g = o // (o_len // groups)
    b = bias[o] if has_bias else 0.0
    xf, of = x.reshape(x.size), out.reshape(out.size)
    out0 = task * oh_len * ow_len
    fill(of, out0, oh_len * ow_len, b)
    for ci in range(cg):
        x0 = (n * x.shape[1] + g * cg + ci) * in_h * in_w
        for i in range(kh):
            for j in range(kw):
                wv = w[o, ci, i, j]
                off_x = j * dw - pl
                lo, hi = _col_range(off_x, sw, in_w, ow_len)
                if not math.isfinite(wv):
                    # The reference (and PyTorch) multiply the zero padding too: 0 * inf
                    # or 0 * NaN is NaN wherever this tap lands on padding.
                    _nan_where_padded(of, out0, oh_len, ow_len, lo, hi, i, sh, pt, dh, in_h)
                for oy in range(oh_len):
                    iy = oy * sh - pt + i * dh
                    if iy < 0 or iy >= in_h:
                        continue
                    axpy(of, out0 + oy * ow_len + lo, 1,
                         xf, x0 + iy * in_w + lo * sw + off_x, sw, hi - lo, wv)


@numba.njit(inline="always")
def _nan_where_padded(of, out0, oh_len, ow_len, lo, hi, i, sh, pt, dh, in_h):
    """NaN into the outputs of one plane whose tap (i, j) lands on padding: rows whose
    input row is outside, columns outside [lo, hi)."""
    for oy in range(oh_len):
        iy = oy * sh - pt + i * dh
        inside = 0 <= iy < in_h
        for ox in range(ow_len):
            if not inside or ox < lo or ox >= hi:
                of[uint64(out0 + oy * ow_len + ox)] = np.nan


@numba.njit(**JIT)
def _conv2d(x, w, bias, has_bias, out, sh, sw, pt, pl, dh, dw, groups):
    for task in prange(out.shape[0] * out.shape[1]):
        conv2d_task(task, x, w, bias, has_bias, out, sh, sw, pt, pl, dh, dw, groups)


@numba.njit(**JIT)
def _conv2d_wide(x, w, bias, has_bias, out, groups):
    """conv2d_task's result for stride 1 without padding or dilation, with each tap one
    long loop: output (oy, ox) reads tap (i, j) at input element q + i*W + j with q =
    oy*W + ox, so the output rows laid end to end, W wide (the kw - 1 columns past each
    row's end are computed and thrown away), make one vectorized axpy per tap instead of
    OH short ones (LeNet-5's c1: 25 loops of 752 instead of 700 of 28)."""
    n_len, c_len, in_h, in_w = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    o_len, cg, kh, kw = w.shape
    oh_len, ow_len = out.shape[2], out.shape[3]
    span = (oh_len - 1) * in_w + ow_len  # the last row stops at its last real column
    xf, of, wf = x.reshape(x.size), out.reshape(out.size), w.reshape(w.size)
    for task in prange(n_len * o_len):
        n, o = task // o_len, task % o_len
        g = o // (o_len // groups)
        wide = np.empty(span, out.dtype)
        b = bias[o] if has_bias else wide.dtype.type(0)
        for q in range(span):
            wide[uint64(q)] = b
        for ci in range(cg):
            x0 = (n * c_len + g * cg + ci) * in_h * in_w
            for i in range(kh):
                for j in range(kw):
                    wv = wf[uint64(((o * cg + ci) * kh + i) * kw + j)]
                    s0 = x0 + i * in_w + j
                    for q in range(span):
                        wide[uint64(q)] += wv * xf[uint64(s0 + q)]
        o0 = task * oh_len * ow_len
        for oy in range(oh_len):
            for ox in range(ow_len):
                of[uint64(o0 + oy * ow_len + ox)] = wide[uint64(oy * in_w + ox)]


@numba.njit(**TASK_JIT)
def conv2d_input_grad_task(task, dy, w, dx, sh, sw, pt, pl, dh, dw, groups):
    """One input-gradient plane dx[n, c], task = n * C + c."""
    c_len, in_h, in_w = dx.shape[1], dx.shape[2], dx.shape[3]
    o_len, cg, kh, kw = w.shape
    oh_len, ow_len = dy.shape[2], dy.shape[3]
    og = o_len // groups
    n, c = task // c_len, task % c_len
    g, ci = c // cg, c % cg
    dxf, dyf = dx.reshape(dx.size), dy.reshape(dy.size)
    dx0 = task * in_h * in_w
    fill(dxf, dx0, in_h * in_w, 0.0)
    for oo in range(og):
        o = g * og + oo
        dy0 = (n * o_len + o) * oh_len * ow_len
        for i in range(kh):
            for j in range(kw):
                wv = w[o, ci, i, j]
                off_x = j * dw - pl
                lo, hi = _col_range(off_x, sw, in_w, ow_len)
                for oy in range(oh_len):
                    iy = oy * sh - pt + i * dh
                    if iy < 0 or iy >= in_h:
                        continue
                    axpy(dxf, dx0 + iy * in_w + lo * sw + off_x, sw,
                         dyf, dy0 + oy * ow_len + lo, 1, hi - lo, wv)


@numba.njit(**JIT)
def _conv2d_input_grad(dy, w, dx, sh, sw, pt, pl, dh, dw, groups):
    for task in prange(dx.shape[0] * dx.shape[1]):
        conv2d_input_grad_task(task, dy, w, dx, sh, sw, pt, pl, dh, dw, groups)


# Reassociation lets LLVM split the dot products' float64 sums into vector lanes (a serial
# sum is one dependent add per element); the sums then differ from the serial order by
# rounding only.
@numba.njit(fastmath={"reassoc", "contract"}, **TASK_JIT)
def conv2d_weight_grad_task(task, dy, x, dw_out, sh, sw, pt, pl, dh, dw, groups, nonfinite):
    """One filter dw[o, ci], task = o * (C / groups) + ci."""
    n_len, in_h, in_w = x.shape[0], x.shape[2], x.shape[3]
    o_len, cg, kh, kw = dw_out.shape
    oh_len, ow_len = dy.shape[2], dy.shape[3]
    og = o_len // groups
    o, ci = task // cg, task % cg
    c = (o // og) * cg + ci
    dyf, xf = dy.reshape(dy.size), x.reshape(x.size)
    for i in range(kh):
        for j in range(kw):
            off_x = j * dw - pl
            lo, hi = _col_range(off_x, sw, in_w, ow_len)
            total = 0.0  # float64: sums over the whole batch
            for n in range(n_len):
                dy0 = (n * o_len + o) * oh_len * ow_len
                x0 = (n * x.shape[1] + c) * in_h * in_w
                if nonfinite[n, o]:
                    # as the reference: dy times the zero padding, NaN for a NaN or inf dy
                    total += _padded_products(dyf, dy0, oh_len, ow_len, lo, hi, i, sh, pt,
                                              dh, in_h)
                for oy in range(oh_len):
                    iy = oy * sh - pt + i * dh
                    if iy < 0 or iy >= in_h:
                        continue
                    total += dot(dyf, dy0 + oy * ow_len + lo,
                                 xf, x0 + iy * in_w + lo * sw + off_x, sw, hi - lo)
            dw_out[o, ci, i, j] = total


@numba.njit(inline="always")
def _padded_products(dyf, dy0, oh_len, ow_len, lo, hi, i, sh, pt, dh, in_h):
    """The sum of dy * 0 over the outputs of one plane whose tap lands on padding: NaN if
    one of those dy is NaN or infinite, else 0."""
    total = 0.0
    for oy in range(oh_len):
        iy = oy * sh - pt + i * dh
        inside = 0 <= iy < in_h
        for ox in range(ow_len):
            if not inside or ox < lo or ox >= hi:
                total += dyf[uint64(dy0 + oy * ow_len + ox)] * 0.0
    return total


@numba.njit(**JIT)
def _conv2d_weight_grad(dy, x, dw_out, sh, sw, pt, pl, dh, dw, groups):
    # Which dy planes hold a NaN or an infinity: one pass over dy, shared by the tasks
    # (each (n, o) plane is read by C / groups of them), so the exact handling of
    # non-finite values costs the finite case nothing per tap.
    nonfinite = np.zeros((dy.shape[0], dy.shape[1]), np.bool_)
    planes = dy.reshape(dy.shape[0] * dy.shape[1], dy.shape[2] * dy.shape[3])
    for p in prange(planes.shape[0]):
        check = 0.0
        for q in range(planes.shape[1]):
            check += planes[p, q] * 0.0  # NaN iff some value is NaN or infinite
        nonfinite[p // dy.shape[1], p % dy.shape[1]] = check != 0.0
    for task in prange(dw_out.shape[0] * dw_out.shape[1]):
        conv2d_weight_grad_task(task, dy, x, dw_out, sh, sw, pt, pl, dh, dw, groups,
                                nonfinite)


# Reassociation splits each tap's float64 sum into vector lanes (as in
# conv2d_weight_grad_task); contraction lets the products fuse into it.
@numba.njit(fastmath={"reassoc", "contract"}, **JIT)
def _conv2d_weight_grad_wide(dy, x, dw_out, groups):
    """_conv2d_weight_grad's result for stride 1 without padding or dilation, with each
    tap one long dot product: as in _conv2d_wide, output (oy, ox) meets tap (i, j) at input
    element q + i*W + j with q = oy*W + ox, so the dy plane laid out W wide (zeros in the
    kw - 1 columns past each row) makes one dot of (OH - 1) * W + OW per tap and image
    instead of OH short ones (LeNet-5's c1: 25 dots of 752 instead of 700 of 28). The
    zeros meet real inputs, so a caller checks the input is finite first (0 * inf)."""
    n_len, c_len, in_h, in_w = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    o_len, cg, kh, kw = dw_out.shape
    oh_len, ow_len = dy.shape[2], dy.shape[3]
    og = o_len // groups
    span = (oh_len - 1) * in_w + ow_len
    xf, dyf = x.reshape(x.size), dy.reshape(dy.size)
    for task in prange(o_len * cg):
        o, ci = task // cg, task % cg
        c = (o // og) * cg + ci
        wide = np.zeros(span, dy.dtype)   # the columns past each row stay zero
        sums = np.zeros(kh * kw, np.float64)   # float64: sums over the whole batch
        for n in range(n_len):
            dy0 = (n * o_len + o) * oh_len * ow_len
            for oy in range(oh_len):
                for ox in range(ow_len):
                    wide[uint64(oy * in_w + ox)] = dyf[uint64(dy0 + oy * ow_len + ox)]
            x0 = (n * c_len + c) * in_h * in_w
            for i in range(kh):
                for j in range(kw):
                    s0 = x0 + i * in_w + j
                    total = 0.0
                    for q in range(span):
                        total += wide[uint64(q)] * xf[uint64(s0 + q)]
                    sums[i * kw + j] += total
        for i in range(kh):
            for j in range(kw):
                dw_out[o, ci, i, j] = sums[i * kw + j]


def conv2d_weight_grad_wide(dy: np.ndarray, x: np.ndarray, dw_out: np.ndarray,
                            attrs: dict[str, Any]) -> None:
    """The weight gradient of a stride-1 unpadded conv (is_unpadded_unit_stride): the
    wide kernel, then the direct one where its result is not finite (the wide kernel's
    zero columns multiply inputs that the reference never reads: see
    direct_weight_grad_if_nonfinite)."""
    launch(_conv2d_weight_grad_wide, dy, x, dw_out, attrs["groups"])
    direct_weight_grad_if_nonfinite(dy, x, dw_out, attrs)


def direct_weight_grad_if_nonfinite(dy: np.ndarray, x: np.ndarray, dw_out: np.ndarray,
                                    attrs: dict[str, Any]) -> None:
    """After a weight-gradient kernel that also multiplies some inputs the reference does
    not read by zeros (the wide kernels' columns past each row's end): this module's
    direct kernel again where the result holds a NaN or an infinity. A NaN or Inf that the
    reference reads reaches its result too, and one that only those zeros meet makes a
    NaN (0 * Inf, 0 * NaN) that NaN and Inf keep to the end of every sum: so a finite
    result means the direct kernel's is the same up to rounding, and checking the small
    result replaces a pass over the whole input beforehand."""
    if not all_finite(dw_out):
        launch(_conv2d_weight_grad, dy, x, dw_out, *geometry(attrs))
    elif recording():  # an artifact's recording run: its code goes in the artifact too
        launch(_conv2d_weight_grad, dy, x, np.empty_like(dw_out), *geometry(attrs))


@numba.njit(**REDUCE_JIT)
def _nonfinite_probe(a):
    total = 0.0
    for k in prange(a.size):
        total += a[k] * 0.0
    return total


def all_finite(a: np.ndarray) -> bool:
    """Whether every value of `a` is finite: one vectorized pass (x * 0 is 0, or NaN for
    NaN and infinities; LLVM may not fold it without fast-math's no-NaN flags)."""
    return bool(launch(_nonfinite_probe, a.reshape(-1)) == 0.0)


Run = Callable[[list[np.ndarray], np.ndarray], None]


def exact_on_nonfinite(op: str, attrs: dict[str, Any], dtype: np.dtype, run: Run) -> Run:
    """`run` (a Winograd kernel of `op`, without the bias), then, if its output holds a
    NaN or an infinity, this module's direct kernel instead: Winograd's transforms mix a
    tile's inputs, so a NaN or Inf there (or a 3e38 that a transform overflows) spreads to
    outputs whose window never held it, where the reference's and PyTorch's direct
    convolutions keep it where it was. NaN and Inf never vanish in the transforms' sums
    and products, so a finite output means there was none; the check is one pass over
    the output."""
    g = geometry(attrs)
    if op == "conv2d":
        no_bias = NO_BIAS[np.dtype(dtype)]

        def exact(ins: list[np.ndarray], out: np.ndarray) -> None:
            launch(_conv2d, ins[0], ins[1], no_bias, False, out, *g)
    else:
        direct = _conv2d_input_grad if op == "conv2d_input_grad" else _conv2d_weight_grad

        def exact(ins: list[np.ndarray], out: np.ndarray) -> None:
            launch(direct, ins[0], ins[1], out, *g)

    def checked(ins: list[np.ndarray], out: np.ndarray) -> None:
        run(ins, out)
        if not all_finite(out):
            exact(ins, out)
        elif recording():  # an artifact's recording run: its code goes in the artifact too
            exact(ins, np.empty_like(out))
    return checked


NO_BIAS = {np.dtype(np.float32): np.zeros(1, np.float32),
           np.dtype(np.float64): np.zeros(1, np.float64)}


def geometry(attrs: dict[str, Any]) -> tuple[int, ...]:
    """(sh, sw, pt, pl, dh, dw, groups): the direct kernels' arguments after the arrays."""
    (sh, sw), pads, (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    return (sh, sw, pads[0], pads[2], dh, dw, attrs["groups"])
