"""Depthwise 3x3 convolution (groups == channels, one filter per channel: MobileNet's),
forward only; the gradients use the grouped direct kernels in conv.py.

The generic direct kernel sweeps the whole output plane once per tap (nine passes, and a
bounds computation per row and tap); here each output element is the nine taps' sum in a
register, the nine weights are scalars held for the whole plane, and the loop along the
output row runs without any bounds test wherever the window lies inside the input: only
the padding border takes the checked path. MobileNetV2's depthwise layers: 5 -> 16+
GFLOP/s.
"""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu.kernels.window import col_range
from graphcnn.backends.cpu.registry import JIT, TASK_JIT, launch


def applies(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, Any]) -> bool:
    """A depthwise 3x3 convolution with one filter per channel and no dilation."""
    channels = x_shape[1]
    return (attrs["groups"] == channels > 1 and w_shape[0] == channels
            and tuple(w_shape[1:]) == (1, 3, 3) and tuple(attrs["dilation"]) == (1, 1))


@numba.njit(inline="always")
def _checked(xf, x0, in_h, in_w, iy0, ix0, w00, w01, w02, w10, w11, w12, w20, w21, w22,
             acc):
    """The window at (iy0, ix0) with the taps outside the input left out."""
    weights = ((w00, w01, w02), (w10, w11, w12), (w20, w21, w22))
    for i in range(3):
        iy = iy0 + i
        if 0 <= iy < in_h:
            for j in range(3):
                ix = ix0 + j
                if 0 <= ix < in_w:
                    acc += weights[i][j] * xf[uint64(x0 + iy * in_w + ix)]
    return acc


@numba.njit(inline="always")
def _inside(xf, r0, in_w, p, w00, w01, w02, w10, w11, w12, w20, w21, w22, acc):
    """The window whose top-left tap is xf[r0 + p], all nine taps inside the input."""
    r1, r2 = r0 + in_w, r0 + 2 * in_w
    return (acc + w00 * xf[uint64(r0 + p)] + w01 * xf[uint64(r0 + p + 1)]
            + w02 * xf[uint64(r0 + p + 2)] + w10 * xf[uint64(r1 + p)]
            + w11 * xf[uint64(r1 + p + 1)] + w12 * xf[uint64(r1 + p + 2)]
            + w20 * xf[uint64(r2 + p)] + w21 * xf[uint64(r2 + p + 1)]
            + w22 * xf[uint64(r2 + p + 2)])


@numba.njit(**TASK_JIT)
def depthwise3x3_task(task, x, w, bias, has_bias, out, sh, sw, pt, pl):
    """One output plane out[n, c], task = n * C + c."""
    c_len, in_h, in_w = x.shape[1], x.shape[2], x.shape[3]
    oh_len, ow_len = out.shape[2], out.shape[3]
    c = task % c_len
    xf, of, wf = x.reshape(x.size), out.reshape(out.size), w.reshape(w.size)
    x0, o0, k0 = task * in_h * in_w, task * oh_len * ow_len, c * 9
    w00, w01, w02 = wf[uint64(k0)], wf[uint64(k0 + 1)], wf[uint64(k0 + 2)]
    w10, w11, w12 = wf[uint64(k0 + 3)], wf[uint64(k0 + 4)], wf[uint64(k0 + 5)]
    w20, w21, w22 = wf[uint64(k0 + 6)], wf[uint64(k0 + 7)], wf[uint64(k0 + 8)]
    # The sums stay in the output's precision (a float64 0.0 here would widen them).
    b = bias[c] if has_bias else np.zeros(1, out.dtype)[0]
    # Output columns whose three taps all land inside the row: ox*sw - pl >= 0 and
    # ox*sw - pl + 2 < in_w.
    lo, hi = col_range(-pl, sw, in_w - 2, ow_len)
    for oy in range(oh_len):
        iy0 = oy * sh - pt
        row = o0 + oy * ow_len
        if iy0 < 0 or iy0 + 2 >= in_h or lo >= hi:
            for ox in range(ow_len):
                of[uint64(row + ox)] = _checked(xf, x0, in_h, in_w, iy0, ox * sw - pl, w00,
                                                w01, w02, w10, w11, w12, w20, w21, w22, b)
            continue
        for ox in range(lo):
            of[uint64(row + ox)] = _checked(xf, x0, in_h, in_w, iy0, ox * sw - pl, w00, w01,
                                            w02, w10, w11, w12, w20, w21, w22, b)
        r0 = x0 + iy0 * in_w - pl
        if sw == 1:  # contiguous loads: LLVM vectorizes this loop
            for ox in range(lo, hi):
                of[uint64(row + ox)] = _inside(xf, r0, in_w, ox, w00, w01, w02, w10, w11,
                                               w12, w20, w21, w22, b)
        else:
            for ox in range(lo, hi):
                of[uint64(row + ox)] = _inside(xf, r0, in_w, ox * sw, w00, w01, w02, w10,
                                               w11, w12, w20, w21, w22, b)
        for ox in range(hi, ow_len):
            of[uint64(row + ox)] = _checked(xf, x0, in_h, in_w, iy0, ox * sw - pl, w00, w01,
                                            w02, w10, w11, w12, w20, w21, w22, b)


@numba.njit(**JIT)
def _depthwise3x3(x, w, bias, has_bias, out, sh, sw, pt, pl):
    for task in prange(out.shape[0] * out.shape[1]):
        depthwise3x3_task(task, x, w, bias, has_bias, out, sh, sw, pt, pl)


def conv2d_depthwise3x3(x: np.ndarray, w: np.ndarray, bias: np.ndarray, has_bias: bool,
                        out: np.ndarray, attrs: dict[str, Any]) -> None:
    (sh, sw), pads = attrs["stride"], attrs["padding"]
    launch(_depthwise3x3, x, w, bias, has_bias, out, sh, sw, pads[0], pads[2])
