"""Depthwise 3x3 convolution (groups == channels, one filter per channel: MobileNet's),
forward, weight gradient and input gradient (stride 1: the forward kernel with the filters
turned; stride 2: a kernel by pixel parity), after the forward kernel.

The generic direct kernel sweeps the whole output plane once per tap (nine passes, and a
bounds computation per row and tap). Here each plane is first copied into a zero-padded
scratch plane (per thread, in cache), so no window needs a bounds test; the nine weights
are scalars held for the plane, and each output is the nine taps' sum in a register,
computed in fixed blocks of 16 that LLVM turns into whole AVX-512 operations even on
MobileNet's 7x7 planes.
"""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu.kernels import conv
from graphcnn.backends.cpu.kernels.grad_mask import Mask, mask_after, mask_arguments, mask_plane
from graphcnn.backends.cpu.registry import JIT, TASK_JIT, launch

# The plane is copied into a zero-padded scratch split into stride phases, laid out
# [column phase][row phase][row][column] with rows of `phase_len` elements: the input of
# output (oy, ox) at tap (i, j) then sits at q + offset(i, j) with q = oy * phase_len + ox.
# One flat loop over q computes every output (and a few columns past each row's end, which
# are thrown away) with unit-stride loads and no bounds test: LLVM fills whole vectors even
# when the rows are 7 wide (MobileNet's last layers), which a loop along one row cannot.

_LANES = 16  # one AVX-512 vector of float32

@numba.njit(inline="always")
def _scratch_geometry(oh_len, ow_len, sh, sw):
    """(rows per row phase, columns per column phase, scratch length)."""
    ph, pw = (oh_len - 1) * sh + 3, (ow_len - 1) * sw + 3
    rows, phase_len = (ph + sh - 1) // sh, (pw + sw - 1) // sw
    # Slack at the end: the last row's thrown-away columns, and the last block of _LANES,
    # read past it.
    return rows, phase_len, sw * sh * rows * phase_len + 2 + _LANES


@numba.njit(inline="always")
def _wide_len(oh_len, phase_len):
    """The outputs computed per plane, rows phase_len long, in whole blocks of _LANES."""
    return (oh_len * phase_len + _LANES - 1) // _LANES * _LANES


@numba.njit(inline="always")
def _offset(i, j, sh, sw, rows, phase_len):
    """Where tap (i, j) of output 0 sits in the scratch: row phase i % sh, row i // sh;
    column phase j % sw, column j // sw."""
    return (((j % sw) * sh + i % sh) * rows + i // sh) * phase_len + j // sw


@numba.njit(inline="always")
def _tap_offsets(sh, sw, rows, phase_len):
    """The nine taps' offsets, row by row."""
    return (_offset(0, 0, sh, sw, rows, phase_len), _offset(0, 1, sh, sw, rows, phase_len),
            _offset(0, 2, sh, sw, rows, phase_len), _offset(1, 0, sh, sw, rows, phase_len),
            _offset(1, 1, sh, sw, rows, phase_len), _offset(1, 2, sh, sw, rows, phase_len),
            _offset(2, 0, sh, sw, rows, phase_len), _offset(2, 1, sh, sw, rows, phase_len),
            _offset(2, 2, sh, sw, rows, phase_len))


@numba.njit(inline="always")
def _phase_span(cp, pl, sw, in_w, phase_len):
    """Positions k of column phase cp that hold input: padded column cp + k * sw is input
    column cp + k * sw - pl."""
    return max(0, (pl - cp + sw - 1) // sw), min(phase_len, (in_w + pl - cp + sw - 1) // sw)


@numba.njit(**TASK_JIT)
def fill_phases(xf, x0, in_h, in_w, pt, pl, sh, sw, rows, phase_len, pad):
    """pad = the plane at xf[x0:] with pt rows and pl columns of zeros before it, in the
    phase layout above."""
    for q in range(pad.size):
        pad[uint64(q)] = 0
    for iy in range(in_h):
        r = iy + pt
        if r >= sh * rows:
            break
        row0 = (r % sh * rows + r // sh) * phase_len  # column phase 0 of this row
        src = x0 + iy * in_w - pl                      # + padded column = input element
        if sw == 2:
            _fill_row_stride2(xf, src, pl, in_w, phase_len, pad, row0,
                              row0 + sh * rows * phase_len)
            continue
        for cp in range(sw):
            k_lo, k_hi = _phase_span(cp, pl, sw, in_w, phase_len)
            d0 = row0 + cp * sh * rows * phase_len
            for k in range(k_lo, k_hi):
                pad[uint64(d0 + k)] = xf[uint64(src + cp + k * sw)]


@numba.njit(inline="always")
def _fill_row_stride2(xf, src, pl, in_w, phase_len, pad, even0, odd0):
    """One row split into its even and odd padded columns. Where both phases hold input,
    one loop reads each pair of neighbours together: LLVM turns that into vector loads and
    shuffles, where a loop per phase is a gather per element (MobileNetV2's stride-2
    layers spent most of their time here)."""
    lo_e, hi_e = _phase_span(0, pl, 2, in_w, phase_len)
    lo_o, hi_o = _phase_span(1, pl, 2, in_w, phase_len)
    lo, hi = max(lo_e, lo_o), min(hi_e, hi_o)
    for k in range(lo_e, min(lo, hi_e)):
        pad[uint64(even0 + k)] = xf[uint64(src + 2 * k)]
    for k in range(lo_o, min(lo, hi_o)):
        pad[uint64(odd0 + k)] = xf[uint64(src + 2 * k + 1)]
    for k in range(lo, hi):
        pad[uint64(even0 + k)] = xf[uint64(src + 2 * k)]
        pad[uint64(odd0 + k)] = xf[uint64(src + 2 * k + 1)]
    for k in range(max(hi, lo_e), hi_e):
        pad[uint64(even0 + k)] = xf[uint64(src + 2 * k)]
    for k in range(max(hi, lo_o), hi_o):
        pad[uint64(odd0 + k)] = xf[uint64(src + 2 * k + 1)]


@numba.njit(**TASK_JIT)
def depthwise3x3_task(task, xf, wf, bias, has_bias, zero, of, c_len, in_h, in_w, oh_len,
                      ow_len, sh, sw, pt, pl, pad, wide, masked, yf, low, high):
    """One output plane of(n, c), task = n * C + c, through this thread's scratch `pad` and
    `wide` (the outputs with each row phase_len long); `masked`: each output kept only
    where low < yf (at the output's index) < high (grad_mask.mask_plane). The arrays come
    flat: a view made here, per plane, is an atomic reference-count update that the
    threads fight over."""
    rows, phase_len, _ = _scratch_geometry(oh_len, ow_len, sh, sw)
    fill_phases(xf, task * in_h * in_w, in_h, in_w, pt, pl, sh, sw, rows, phase_len, pad)
    c, o0 = task % c_len, task * oh_len * ow_len
    b = bias[c] if has_bias else zero
    k0 = c * 9
    w00, w01, w02 = wf[uint64(k0)], wf[uint64(k0 + 1)], wf[uint64(k0 + 2)]
    w10, w11, w12 = wf[uint64(k0 + 3)], wf[uint64(k0 + 4)], wf[uint64(k0 + 5)]
    w20, w21, w22 = wf[uint64(k0 + 6)], wf[uint64(k0 + 7)], wf[uint64(k0 + 8)]
    p0, p1, p2, p3, p4, p5, p6, p7, p8 = _tap_offsets(sh, sw, rows, phase_len)
    # Blocks of a fixed _LANES outputs: LLVM turns each block into whole vector operations,
    # where a plain loop over 63 outputs (a 7x7 plane) would run its scalar remainder only.
    for q0 in range(0, _wide_len(oh_len, phase_len), _LANES):
        for lane in range(_LANES):
            q = q0 + lane
            wide[uint64(q)] = (
                b + w00 * pad[uint64(p0 + q)] + w01 * pad[uint64(p1 + q)]
                + w02 * pad[uint64(p2 + q)] + w10 * pad[uint64(p3 + q)]
                + w11 * pad[uint64(p4 + q)] + w12 * pad[uint64(p5 + q)]
                + w20 * pad[uint64(p6 + q)] + w21 * pad[uint64(p7 + q)]
                + w22 * pad[uint64(p8 + q)])
    for oy in range(oh_len):
        for ox in range(ow_len):
            of[uint64(o0 + oy * ow_len + ox)] = wide[uint64(oy * phase_len + ox)]
    if masked:
        mask_plane(of, yf, o0, oh_len * ow_len, low, high)


@numba.njit(**JIT)
def _depthwise3x3(x, w, bias, has_bias, out, sh, sw, pt, pl, blocks, masked, y, low, high):
    c_len, in_h, in_w = x.shape[1], x.shape[2], x.shape[3]
    oh_len, ow_len = out.shape[2], out.shape[3]
    planes = out.shape[0] * c_len
    rows, phase_len, pad_len = _scratch_geometry(oh_len, ow_len, sh, sw)
    xf, of, wf = x.reshape(x.size), out.reshape(out.size), w.reshape(w.size)
    yf = y.reshape(y.size)
    blocks = min(planes, blocks)
    for block in prange(blocks):
        pad, wide = np.empty(pad_len, x.dtype), np.empty(_wide_len(oh_len, phase_len), x.dtype)
        # The sums stay in the output's precision (a float64 0.0 would widen them).
        zero = np.zeros(1, out.dtype)[0]
        for task in range(block * planes // blocks, (block + 1) * planes // blocks):
            depthwise3x3_task(task, xf, wf, bias, has_bias, zero, of, c_len, in_h, in_w,
                              oh_len, ow_len, sh, sw, pt, pl, pad, wide, masked, yf, low, high)


def conv2d_depthwise3x3(x: np.ndarray, w: np.ndarray, bias: np.ndarray, has_bias: bool,
                        out: np.ndarray, attrs: dict[str, Any], mask: Mask | None = None
                        ) -> None:
    (sh, sw), pads = attrs["stride"], attrs["padding"]
    # A few blocks of planes per thread, each with its own padded scratch plane.
    blocks = 4 * numba.get_num_threads()
    launch(_depthwise3x3, x, w, bias, has_bias, out, sh, sw, pads[0], pads[2], blocks,
           *mask_arguments(out, mask))


# ---- the weight gradient ------------------------------------------------------------------
# dw[c, i, j] = sum over n, oy, ox of dy[n, c, oy, ox] * xpad[n, c, oy*sh + i, ox*sw + j]:
# each image's plane goes into the padded phase scratch as in the forward kernel, dy's
# plane into `wide` (rows phase_len long, zeros past each row's end), and each tap is one
# dot of wide with the scratch at the tap's offset: nine dots of unit-stride loads where the
# generic direct kernel makes nine short dots per output row. Products with the zero
# padding are computed as the reference computes them (a NaN or infinite dy makes every tap
# NaN); the zeros past each row meet real inputs, so a result that is not finite is
# computed again by the generic kernel (conv.direct_weight_grad_if_nonfinite).

@numba.njit(fastmath={"reassoc", "contract"}, **JIT)
def _depthwise3x3_weight_grad(dy, x, dw_out, sh, sw, pt, pl):
    n_len, c_len, in_h, in_w = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    oh_len, ow_len = dy.shape[2], dy.shape[3]
    rows, phase_len, pad_len = _scratch_geometry(oh_len, ow_len, sh, sw)
    span = (oh_len - 1) * phase_len + ow_len
    xf, dyf = x.reshape(x.size), dy.reshape(dy.size)
    p0, p1, p2, p3, p4, p5, p6, p7, p8 = _tap_offsets(sh, sw, rows, phase_len)
    for c in prange(c_len):
        pad, wide = np.empty(pad_len, x.dtype), np.zeros(span, dy.dtype)
        sums = np.zeros(9, np.float64)   # float64: sums over the whole batch
        # A plane's sums in dy's precision, split into vector lanes (reassociation):
        # float64 ones would halve the lanes and add a conversion per product.
        zero = np.zeros(1, dy.dtype)[0]
        for n in range(n_len):
            plane = n * c_len + c
            fill_phases(xf, plane * in_h * in_w, in_h, in_w, pt, pl, sh, sw, rows, phase_len,
                        pad)
            d0 = plane * oh_len * ow_len
            for oy in range(oh_len):
                for ox in range(ow_len):
                    wide[uint64(oy * phase_len + ox)] = dyf[uint64(d0 + oy * ow_len + ox)]
            t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = t8 = zero
            for q in range(span):
                g = wide[uint64(q)]
                t0 += g * pad[uint64(p0 + q)]
                t1 += g * pad[uint64(p1 + q)]
                t2 += g * pad[uint64(p2 + q)]
                t3 += g * pad[uint64(p3 + q)]
                t4 += g * pad[uint64(p4 + q)]
                t5 += g * pad[uint64(p5 + q)]
                t6 += g * pad[uint64(p6 + q)]
                t7 += g * pad[uint64(p7 + q)]
                t8 += g * pad[uint64(p8 + q)]
            sums[0] += t0
            sums[1] += t1
            sums[2] += t2
            sums[3] += t3
            sums[4] += t4
            sums[5] += t5
            sums[6] += t6
            sums[7] += t7
            sums[8] += t8
        for k in range(9):
            dw_out[c, 0, k // 3, k % 3] = sums[k]


def depthwise3x3_weight_grad(dy: np.ndarray, x: np.ndarray, dw_out: np.ndarray,
                             attrs: dict[str, Any]) -> None:
    """The weight gradient of a depthwise 3x3 conv (conv_shapes.is_depthwise_3x3); the
    generic direct kernel where the result is not finite (see above)."""
    (sh, sw), pads = attrs["stride"], attrs["padding"]
    launch(_depthwise3x3_weight_grad, dy, x, dw_out, sh, sw, pads[0], pads[2])
    conv.direct_weight_grad_if_nonfinite(dy, x, dw_out, attrs)


# ---- the input gradient, stride 1 -----------------------------------------------------------
# With stride 1 and one pixel of padding all round, dx is the forward conv of dy with each
# filter turned by 180 degrees, padded by one pixel (2 - 1): the forward kernel runs it. The
# products are the reference's (each dy times each tap that lands inside dx); only a
# non-finite weight would differ, times the zero padding, so that takes the direct kernel.

def input_grad_applies(channels: int, w_shape: tuple[int, ...], attrs: dict[str, Any]) -> bool:
    """A depthwise 3x3 conv of stride 1 padded by one pixel on every side (MobileNet's
    stride-1 layers), whose input gradient this forward kernel computes."""
    from graphcnn.ops.conv_shapes import is_depthwise_3x3

    return (is_depthwise_3x3(channels, w_shape, attrs) and tuple(attrs["stride"]) == (1, 1)
            and tuple(attrs["padding"]) == (1, 1, 1, 1))


def depthwise3x3_input_grad(dy: np.ndarray, w: np.ndarray, dx: np.ndarray,
                            attrs: dict[str, Any], mask: Mask | None = None) -> None:
    """dx of a conv that `input_grad_applies` to; `mask`: a fused clip_grad after it."""
    if not conv.all_finite(w):
        launch(conv._conv2d_input_grad, dy, w, dx, *conv.geometry(attrs))
        mask_after(dx, mask)
        return
    turned = np.ascontiguousarray(w[:, :, ::-1, ::-1])
    conv2d_depthwise3x3(dy, turned, conv.NO_BIAS[dx.dtype], False, dx, attrs, mask)


# ---- the input gradient, stride 2 -----------------------------------------------------------
# With stride 2 and one pixel of padding all round, dx's pixel (iy, ix) gets dy's taps by
# the parity of iy and ix: row 2m takes dy's row m through filter row 1; row 2m + 1 takes
# rows m + 1 (filter row 0) and m (filter row 2); columns likewise. So a pair of dx columns
# (2k, 2k + 1) is one and two products of dy's columns k and k + 1: 1, 2, 2 and 4 products
# for the four parities, nine per 2x2 block, where the direct kernel tests each of the
# nine taps of every pixel for its stride and bounds. dy's plane is copied into a scratch
# with one zero row and column after it (rows ow + 1 long), so row m + 1 and column k + 1
# exist at the edges; the zeros meet finite weights only (an infinite or NaN weight takes
# the direct kernel), so each dx is the sum of the reference's products, NaN where a NaN
# or infinite dy reaches it only.

@numba.njit(**TASK_JIT)
def depthwise3x3_s2_input_grad_task(task, dyf, wf, dxf, c_len, oh_len, ow_len, in_h, in_w,
                                    dp, masked, yf, low, high):
    """dx's plane task = n * C + c, through this thread's scratch `dp` (zero in its last
    row and column, which the copy never writes); `masked`: then mask_plane over the plane."""
    row = ow_len + 1
    d0 = task * oh_len * ow_len
    for oy in range(oh_len):
        for ox in range(ow_len):
            dp[uint64(oy * row + ox)] = dyf[uint64(d0 + oy * ow_len + ox)]
    k0 = (task % c_len) * 9
    w00, w01, w02 = wf[uint64(k0)], wf[uint64(k0 + 1)], wf[uint64(k0 + 2)]
    w10, w11, w12 = wf[uint64(k0 + 3)], wf[uint64(k0 + 4)], wf[uint64(k0 + 5)]
    w20, w21, w22 = wf[uint64(k0 + 6)], wf[uint64(k0 + 7)], wf[uint64(k0 + 8)]
    x0, half, odd_w = task * in_h * in_w, in_w // 2, in_w % 2 == 1
    for m in range((in_h + 1) // 2):
        r0, r1 = m * row, (m + 1) * row
        e = x0 + 2 * m * in_w
        # Each pair of dx columns stored together: LLVM interleaves the two vectors of
        # products with shuffles (a loop per column parity would be a scatter).
        for k in range(half):
            a, b = dp[uint64(r0 + k)], dp[uint64(r0 + k + 1)]
            dxf[uint64(e + 2 * k)] = w11 * a
            dxf[uint64(e + 2 * k + 1)] = w10 * b + w12 * a
        if odd_w:
            dxf[uint64(e + in_w - 1)] = w11 * dp[uint64(r0 + half)]
        if 2 * m + 1 >= in_h:
            continue
        o = e + in_w
        for k in range(half):
            a, b = dp[uint64(r0 + k)], dp[uint64(r0 + k + 1)]
            c, d = dp[uint64(r1 + k)], dp[uint64(r1 + k + 1)]
            dxf[uint64(o + 2 * k)] = w01 * c + w21 * a
            dxf[uint64(o + 2 * k + 1)] = w00 * d + w02 * c + w20 * b + w22 * a
        if odd_w:
            dxf[uint64(o + in_w - 1)] = w01 * dp[uint64(r1 + half)] + w21 * dp[uint64(r0 + half)]
    if masked:
        mask_plane(dxf, yf, x0, in_h * in_w, low, high)


@numba.njit(**JIT)
def _depthwise3x3_s2_input_grad(dy, w, dx, blocks, masked, y, low, high):
    c_len, oh_len, ow_len = dy.shape[1], dy.shape[2], dy.shape[3]
    in_h, in_w = dx.shape[2], dx.shape[3]
    planes = dx.shape[0] * c_len
    dyf, wf, dxf = dy.reshape(dy.size), w.reshape(w.size), dx.reshape(dx.size)
    yf = y.reshape(y.size)
    blocks = min(planes, blocks)
    for block in prange(blocks):
        dp = np.zeros((oh_len + 1) * (ow_len + 1), dy.dtype)
        for task in range(block * planes // blocks, (block + 1) * planes // blocks):
            depthwise3x3_s2_input_grad_task(task, dyf, wf, dxf, c_len, oh_len, ow_len, in_h,
                                            in_w, dp, masked, yf, low, high)


def input_grad_s2_applies(channels: int, w_shape: tuple[int, ...],
                          attrs: dict[str, Any]) -> bool:
    """A depthwise 3x3 conv of stride 2 padded by one pixel on every side (MobileNet's
    stride-2 layers)."""
    from graphcnn.ops.conv_shapes import is_depthwise_3x3

    return (is_depthwise_3x3(channels, w_shape, attrs) and tuple(attrs["stride"]) == (2, 2)
            and tuple(attrs["padding"]) == (1, 1, 1, 1))


def depthwise3x3_s2_input_grad(dy: np.ndarray, w: np.ndarray, dx: np.ndarray,
                               attrs: dict[str, Any], mask: Mask | None = None) -> None:
    """dx of a conv that `input_grad_s2_applies` to; `mask`: a fused clip_grad after it."""
    if not conv.all_finite(w):
        launch(conv._conv2d_input_grad, dy, w, dx, *conv.geometry(attrs))
        mask_after(dx, mask)
        return
    # A few blocks of planes per thread, each with its own scratch.
    launch(_depthwise3x3_s2_input_grad, dy, w, dx, 4 * numba.get_num_threads(),
           *mask_arguments(dx, mask))
