"""An NCHW convolution computed in NCHW16c: the cpu strategy's "nchw16c" algorithm for a
float32 one-group conv2d whose input and output stay NCHW.

The blocked tap-table kernel (nchw16c_conv.conv2d_nchw16c_general) reads an NCHW input as it
is and writes its output a block of 16 channels by NR pixels at a time, each pixel's 16
channels one vector, stored one after the other. Where a layer's output rows are the slow
part of an NCHW kernel, that wins even with a copy back: ResNet's 7x7 stride-2 stem (three
input channels, 147 products per output) at batch 16 took 25 ms in the pixels-in-lanes
GEMM, whose tiles store rows a whole 112x112 plane apart, and 12.5 ms blocked plus 3.5 ms
for the copy. The copy applies the fused group's epilogue (a residual add, relu, clip) as it
goes, so the group still makes one pass over its output. The autotuner decides where it
pays: it times this against the NCHW kernels, epilogue included.
"""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu.kernels import nchw16c_conv
from graphcnn.backends.cpu.kernels.conv_gemm import Scratch, workspace
from graphcnn.backends.cpu.kernels.packed_gemm import conv_side, zero_bias
from graphcnn.backends.cpu.kernels.packed_gemm import epilogue as apply_epilogue
from graphcnn.backends.cpu.kernels.vector_ir import ADD_BIAS, LANES
from graphcnn.backends.cpu.registry import JIT, launch
from graphcnn.ops.layout import blocks


@numba.njit(**JIT)
def _from_blocks(x, out, side, mode, low, high):
    """out (NCHW) = epilogue(x (NCHW16c)), through 16 x 16 tiles (16 channels by 16
    pixels), so the reads and the writes are runs of 16 in cache; `side` (out's shape) is
    read only where mode adds it."""
    n_len, c_len, cb_len = out.shape[0], out.shape[1], x.shape[1]
    hw = out.shape[2] * out.shape[3]
    xf, of, sf = x.reshape(x.size), out.reshape(out.size), side.reshape(side.size)
    zero = np.float32(0)
    for task in prange(n_len * cb_len):
        n, cb = task // cb_len, task % cb_len
        x0 = task * hw * LANES
        for p0 in range(0, hw, LANES):
            for lane in range(min(LANES, c_len - cb * LANES)):
                dst = (n * c_len + cb * LANES + lane) * hw
                for p in range(p0, min(hw, p0 + LANES)):
                    at = uint64(dst + p)
                    of[at] = apply_epilogue(xf[uint64(x0 + p * LANES + lane)], zero, sf[at],
                                            mode, low, high)


def through_blocks_scratch(x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                           out_hw: tuple[int, int], attrs: dict[str, Any]) -> Scratch:
    """The workspaces conv2d_through_blocks takes: the blocked output, and the blocked
    kernel's padded copy of x where the conv pads."""
    shape = (x_shape[0], blocks(w_shape[0]), *out_hw, LANES)
    return {"nchw16c-out": (shape, np.dtype(np.float32)),
            **nchw16c_conv.general_scratch(x_shape, attrs, np.float32)}


def _bias16(bias: np.ndarray | None, count: int) -> np.ndarray:
    """The bias as the blocked kernel reads it: `count` whole blocks, zeros past the
    channels (or all zeros, shared, where there is none)."""
    if bias is None:
        return zero_bias(count * LANES)
    if bias.shape[0] == count * LANES:
        return np.ascontiguousarray(bias, np.float32)
    padded = np.zeros(count * LANES, np.float32)
    padded[:bias.shape[0]] = bias
    return padded


def conv2d_through_blocks(x: np.ndarray, w: np.ndarray, out: np.ndarray,
                          attrs: dict[str, Any], panels: np.ndarray | None = None,
                          bias: np.ndarray | None = None, epilogue: Any = None) -> None:
    """out (NCHW) = conv2d(x, w) (float32, one group), with `bias` and a fused group's
    `epilogue` (an nchw16c_conv.Epilogue, its side of out's shape) if given: computed into
    a blocked workspace, then copied to out; `panels`: nchw16c_conv.packed_weights(w) made
    already."""
    count = blocks(w.shape[0])
    staged = workspace("nchw16c-out", (out.shape[0], count, *out.shape[2:], LANES),
                       np.float32)
    nchw16c_conv.conv2d_nchw16c_general(x, w, _bias16(bias, count), staged, attrs,
                                        nchw16c_conv.NO_EPILOGUE, panels)
    mode, low, high = 0, np.float32(0), np.float32(0)
    if epilogue is not None:
        mode = epilogue.mode & ~ADD_BIAS
        low, high = np.float32(epilogue.low), np.float32(epilogue.high)
    launch(_from_blocks, staged, out, conv_side(out, epilogue), mode, low, high)
