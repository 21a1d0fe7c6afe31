"""The gradients of the depthwise 3x3 convolution (depthwise.py's forward kernel): the
weight gradient through the forward kernel's scratch layouts, the input gradient at stride
1 as the forward kernel with the filters turned, and at stride 2 by pixel parity."""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu.kernels import conv
from graphcnn.backends.cpu.kernels.depthwise import (
    LANES,
    column_masks,
    conv2d_depthwise3x3,
    fill_plane,
    runs_flat,
    scratch_geometry,
    tap_offsets,
)
from graphcnn.backends.cpu.kernels.grad_mask import Mask, mask_after, mask_arguments, mask_plane
from graphcnn.backends.cpu.registry import JIT, launch

# ---- the weight gradient ------------------------------------------------------------------
# dw[c, i, j] = sum over n, oy, ox of dy[n, c, oy, ox] * xpad[n, c, oy*sh + i, ox*sw + j]:
# each image's plane goes into the padded phase scratch as in the forward kernel, dy's
# plane into `wide` (rows phase_len long, zeros past each row's end), and each tap is one
# dot of wide with the scratch at the tap's offset: nine dots of unit-stride loads where the
# generic direct kernel makes nine short dots per output row. A plane that the forward
# kernel runs flat (depthwise.runs_flat: 7x7 to 28x28 at stride 1) goes flat here too,
# and its dots are over whole vectors (MobileNetV2's 16 x 960 planes of 7x7: 1.3 -> 0.46
# ms). The scratch is cleared for each channel's first image only. Products with the zero
# padding are computed as the reference computes them (a NaN or infinite dy makes every tap
# NaN); the zeros past each row meet real inputs, so a result that is not finite is
# computed again by the generic kernel (conv.direct_weight_grad_if_nonfinite).

@numba.njit(fastmath={"reassoc", "contract"}, inline="always")
def _flat_dots(xf, dyf, x0, d0, size, ow_len, pad, wide, left, right, zero):
    """A plane's nine tap sums for a plane that runs flat (depthwise._flat_task's layout:
    x's plane between margins of zeros, the taps past an edge column masked); dy's plane
    goes into `wide`, whose zeros past it fill the last block of LANES."""
    margin = ow_len + 1
    for i in range(size):
        pad[uint64(margin + i)] = xf[uint64(x0 + i)]
        wide[uint64(i)] = dyf[uint64(d0 + i)]
    t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = t8 = zero
    for i in range(left.size):
        g = wide[uint64(i)]
        up, mid, down = margin + i - ow_len, margin + i, margin + i + ow_len
        lt, rt = left[uint64(i)], right[uint64(i)]
        t0 += g * (pad[uint64(up - 1)] if lt else zero)
        t1 += g * pad[uint64(up)]
        t2 += g * (pad[uint64(up + 1)] if rt else zero)
        t3 += g * (pad[uint64(mid - 1)] if lt else zero)
        t4 += g * pad[uint64(mid)]
        t5 += g * (pad[uint64(mid + 1)] if rt else zero)
        t6 += g * (pad[uint64(down - 1)] if lt else zero)
        t7 += g * pad[uint64(down)]
        t8 += g * (pad[uint64(down + 1)] if rt else zero)
    return t0, t1, t2, t3, t4, t5, t6, t7, t8


@numba.njit(fastmath={"reassoc", "contract"}, **JIT)
def _depthwise3x3_weight_grad(dy, x, dw_out, sh, sw, pt, pl, left, right):
    n_len, c_len, in_h, in_w = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    oh_len, ow_len = dy.shape[2], dy.shape[3]
    rows, phase_len, pad_len = scratch_geometry(oh_len, ow_len, sh, sw)
    span = (oh_len - 1) * phase_len + ow_len
    xf, dyf = x.reshape(x.size), dy.reshape(dy.size)
    p0, p1, p2, p3, p4, p5, p6, p7, p8 = tap_offsets(sh, sw, rows, phase_len)
    flat = left.size > 1
    for c in prange(c_len):
        pad, wide = np.empty(pad_len, x.dtype), np.zeros(max(span, left.size), dy.dtype)
        sums = np.zeros(9, np.float64)   # float64: sums over the whole batch
        # A plane's sums in dy's precision, split into vector lanes (reassociation):
        # float64 ones would halve the lanes and add a conversion per product.
        zero = np.zeros(1, dy.dtype)[0]
        for n in range(n_len):
            plane = n * c_len + c
            x0, d0 = plane * in_h * in_w, plane * oh_len * ow_len
            if n == 0:
                pad[:] = 0
            if flat:
                t = _flat_dots(xf, dyf, x0, d0, oh_len * ow_len, ow_len, pad, wide, left,
                               right, zero)
                for k in range(9):
                    sums[k] += t[k]
                continue
            fill_plane(xf, x0, in_h, in_w, pt, pl, sh, sw, rows, phase_len, pad, False)
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
    flat = runs_flat(x.shape, dy.shape, sh, sw, pads[0], pads[2])
    size = dy.shape[2] * dy.shape[3]
    # the dots run over whole blocks of LANES, past the plane's end (dy's part is zero)
    launch(_depthwise3x3_weight_grad, dy, x, dw_out, sh, sw, pads[0], pads[2],
           *column_masks(dy.shape[3], (size + LANES - 1) // LANES * LANES, flat))
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

@numba.njit(inline="always")
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
