"""expand_depthwise_blocked (graphcnn/ops/layout.py): a 1x1 expansion, clip, and a depthwise
3x3 convolution in NCHW16c, without the expanded tensor ever reaching memory.

MobileNetV2's blocks widen their input six times (16 -> 96 channels at 112x112: 4.8 MB at
batch 1), and in NCHW16c the depthwise convolution after the widening is cheap: the two
kernels run one after the other wrote that tensor to memory and read it back, which cost
more than either kernel's arithmetic. Here a task is a pair of expanded channel blocks and
a band of output rows: it computes the expanded rows the band needs (its input rows, a
halo of two more) into a scratch band with zero borders (in L2), on nchw16c_conv's microkernel
with the clip as its epilogue, then runs the depthwise windows over the scratch band (all
inside it: no border cases) and stores the output, with the group's own epilogue. The
halo rows are computed twice (by the bands above and below): 2 of every band * stride + 2.
"""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange

from graphcnn.backends.cpu.kernels import nchw16c
from graphcnn.backends.cpu.kernels.nchw16c_conv import (
    NB,
    NO_EPILOGUE,
    NR,
    Epilogue,
    pixel_offsets,
    pointwise_table,
    tile,
)
from graphcnn.backends.cpu.kernels.vector_ir import CLIP
from graphcnn.backends.cpu.registry import JIT, get_kernel, launch
from graphcnn.ops.conv_shapes import is_depthwise_3x3
from graphcnn.ops.layout import POINTWISE, conv_attrs

LANES = 16
SCRATCH_BYTES = 256 * 1024  # a task's scratch band: in the core's L2 with room to spare


@numba.njit(**JIT)
def _expand_depthwise(wp, x, table, b1, low1, high1, wk, b2, out, sh, sw, pt, pl, band,
                      rows_in, width, threads, side, mode, low, high):
    """out = depthwise(clip(conv1x1(x) + b1)) + b2, then the epilogue; see the module
    docstring. The scratch holds NB blocks of rows_in rows of `width` pixels."""
    n_len, eb_len, oh, ow = out.shape[0], out.shape[1], out.shape[2], out.shape[3]
    cb_len, in_h, in_w = x.shape[1], x.shape[2], x.shape[3]
    k_len = table.shape[0]
    pairs = (eb_len + NB - 1) // NB
    bands = (oh + band - 1) // band
    tasks = n_len * pairs * bands
    plane = rows_in * width * LANES  # one block's scratch band
    threads = min(threads, tasks)
    x0, t0, w0, b10 = x.ctypes.data, table.ctypes.data, wp.ctypes.data, b1.ctypes.data
    o0, s0, wk0, b20 = out.ctypes.data, side.ctypes.data, wk.ctypes.data, b2.ctypes.data
    for thread in prange(threads):
        scratch = np.empty(NB * plane, np.float32)
        sc = scratch.ctypes.data
        offsets = np.empty(NR, np.int64)
        for task in range(thread * tasks // threads, (thread + 1) * tasks // threads):
            n, rest = task // (pairs * bands), task % (pairs * bands)
            p, bnd = rest // bands, rest % bands
            blocks = min(NB, eb_len - p * NB)
            oy0 = bnd * band
            oy1 = min(oh, oy0 + band)
            iy_lo = oy0 * sh - pt
            rows = (oy1 - 1 - oy0) * sh + 3
            for r in range(rows):
                iy = iy_lo + r
                for v in range(NB):
                    at = v * plane + r * width * LANES
                    if iy < 0 or iy >= in_h:  # a padding row: zeros
                        for q in range(width * LANES):
                            scratch[at + q] = 0
                        continue
                    for q in range(pl * LANES):  # the padding columns
                        scratch[at + q] = 0
                    for q in range((pl + in_w) * LANES, width * LANES):
                        scratch[at + q] = 0
                if iy < 0 or iy >= in_h:
                    continue
                x_row = x0 + ((n * cb_len * in_h + iy) * in_w) * LANES * 4
                for t in range((in_w + NR - 1) // NR):
                    valid = min(NR, in_w - t * NR)
                    pixel_offsets(offsets, 0, valid, NR, LANES, 0)
                    tile(w0 + p * k_len * NB * LANES * 4, x_row + t * NR * LANES * 4, t0,
                         k_len, offsets.ctypes.data, b10 + p * NB * LANES * 4,
                         sc + ((r * width + pl + t * NR) * LANES) * 4, plane, blocks, valid,
                         sc, CLIP, low1, high1)
            for v in range(blocks):
                eb = p * NB + v
                for oy in range(oy0, oy1):
                    at = (((n * eb_len + eb) * oh + oy) * ow) * LANES * 4
                    nchw16c.taps_run(sc + v * plane * 4, (oy - oy0) * sh * width * LANES,
                                     width * LANES, sw * LANES, ow, wk0 + eb * 9 * LANES * 4,
                                     b20 + eb * LANES * 4, o0 + at, s0 + at, mode, low,
                                     high)


def prepare(ins: list[np.ndarray], blocks: int, dtype: Any
            ) -> tuple[nchw16c.Prepared, nchw16c.Prepared]:
    """The two convs' weights and biases (x, w1, b1, w2, b2 = ins) in the kernel's forms."""
    x, w1, b1, w2, b2 = ins
    return (nchw16c.prepare([x, w1, b1], blocks, dtype, blocks_per_panel=NB),
            nchw16c.prepare([x, w2, b2], blocks, dtype, depthwise=True))


def run_expand_depthwise(ins: list[np.ndarray], out: np.ndarray, attrs: dict[str, Any],
                         epilogue: Epilogue = NO_EPILOGUE,
                         prepared: tuple[nchw16c.Prepared, nchw16c.Prepared] | None = None
                         ) -> None:
    """out = expand_depthwise_blocked(*ins), then `epilogue`, as it stores (float32, a
    depthwise 3x3 conv without dilation: `applies`); `prepared`: prepare(ins, ..) made
    already (a frozen node's), else made here."""
    x, w1 = ins[0], ins[1]
    (sh, sw), pads = attrs["stride"], attrs["padding"]
    in_h, in_w = x.shape[2], x.shape[3]
    oh, ow = out.shape[2], out.shape[3]
    eb_len = out.shape[1]
    first, second = prepared or prepare(ins, eb_len, out.dtype)
    wp, b1_16, wk, b2_16 = first.weights, first.bias16, second.weights, second.bias16
    table = pointwise_table(w1.shape[1], in_h * in_w)
    width = max((ow - 1) * sw + 3, pads[2] + in_w)
    rows_fit = SCRATCH_BYTES // (NB * width * LANES * 4)
    band = max(1, min(oh, (rows_fit - 3) // sh + 1))  # output rows per task
    rows_in = (band - 1) * sh + 3
    launch(_expand_depthwise, wp, x, table, b1_16, np.float32(attrs["low"]),
           np.float32(attrs["high"]), wk, b2_16, out, sh, sw, pads[0], pads[2], band, rows_in,
           width, numba.get_num_threads(), *epilogue.args(out))


def applies(x_dtype: Any, w2_shape: tuple[int, ...], attrs: dict[str, Any]) -> bool:
    """What the kernel computes: float32, a 3x3 depthwise conv without dilation."""
    return np.dtype(x_dtype) == np.float32 and is_depthwise_3x3(attrs["groups"], w2_shape,
                                                                attrs)


def run_two_pass(ins: list[np.ndarray], out: np.ndarray, attrs: dict[str, Any]) -> None:
    """Any other: the two convolutions one after the other through the conv2d_blocked
    kernel (correct, not fast; the layout pass does not make these)."""
    x, w1, b1, w2, b2 = ins
    conv = get_kernel("conv2d_blocked")
    expanded = np.empty(out.shape[:2] + x.shape[2:], x.dtype)
    conv([x, w1, b1], [expanded], dict(POINTWISE))
    clipped = np.clip(expanded, attrs["low"], attrs["high"]).astype(x.dtype)
    conv([clipped, w2, b2], [out], conv_attrs(attrs))
