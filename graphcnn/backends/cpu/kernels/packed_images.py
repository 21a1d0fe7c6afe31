"""The channels-in-lanes packed GEMM convolution (packed_gemm.conv2d_packed_channels) with
the images split over the threads: each thread takes its share of the batch, builds an
image's im2col columns into its own buffer (a 1x1 stride-1 conv reads the image itself)
and multiplies them at once, alone.

Image by image, the threads would meet twice per image (after the im2col, after the
product), each reading columns the other core wrote; and each layer's output would be
written by both cores, so the next layer reads half of it from the other core's cache
(a cost that is 1.8x to 10x a read of a core's own lines, depending on where the host
puts the two cores: bench/cross_core.py). Split by images, the threads meet once per
layer and an image's activations stay on the core that computes them, as long as the
layers around split the batch the same way (Winograd's blocks of tile rows do).
"""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu.kernels import packed_gemm
from graphcnn.backends.cpu.kernels.conv_gemm import _im2col_block, workspace
from graphcnn.backends.cpu.kernels.packed_gemm import (
    LANES,
    NR_WIDE,
    panel_group,
    panel_width,
    tile_channels_n,
)
from graphcnn.backends.cpu.registry import JIT, launch
from graphcnn.ops.conv_shapes import is_pointwise


def splits_images(n_len: int, threads: int) -> bool:
    """Whether a batch of n_len images is split over the threads: every thread gets as
    many images, or enough that one more is a small part of its share."""
    return threads > 1 and n_len >= threads and (n_len % threads == 0
                                                 or n_len >= 4 * threads)


@numba.njit(**JIT)
def _by_images(ap, x, out, m_len, nr, kh, kw, sh, sw, pt, pl, dh, dw, col, tails, threads,
               pointwise):
    """out[n] = W @ col(x[n]) for W packed as (M/16, K, 16) panels, thread t taking images
    t * N / threads up to (t + 1) * N / threads, its columns in col[t] (`pointwise`: x[n]
    itself) and its copy of the last, partial panel of columns in tails[t]. Up to three
    weight panels at a time over all the image's columns (packed_gemm._gemm_columns)."""
    n_len, c_len, in_h, in_w = x.shape
    oh_len, ow_len = out.shape[2], out.shape[3]
    p = oh_len * ow_len
    mb_len, k_len = ap.shape[0], ap.shape[1]
    nb_len, full = (p + nr - 1) // nr, p // nr
    xf, cf, of = x.reshape(x.size), col.reshape(col.size), out.reshape(out.size)
    for t in prange(threads):
        tile = np.empty(3 * LANES * NR_WIDE, np.float32)
        tail = tails[t]
        c0 = t * k_len * p
        for n in range(t * n_len // threads, (t + 1) * n_len // threads):
            src, s0 = xf, n * c_len * p
            if not pointwise:
                _im2col_block(xf, n * c_len * in_h * in_w, in_h, in_w, c_len, kh, kw, sh, sw,
                              pt, pl, dh, dw, ow_len, 0, p, cf, c0)
                src, s0 = cf, c0
            if full < nb_len:
                for k in range(k_len):
                    for j in range(nr):
                        q = full * nr + j
                        tail[k * nr + j] = src[uint64(s0 + k * p + q)] if q < p else 0
            b_addr = src.ctypes.data + s0 * 4
            mb = 0
            while mb < mb_len:
                panels = panel_group(mb_len - mb)
                a_at = ap.ctypes.data + mb * k_len * LANES * 4
                height = panels * LANES   # a tile column's rows
                rows = min(height, m_len - mb * LANES)
                for nb in range(nb_len):
                    b_at, step = b_addr + nb * nr * 4, p
                    if nb == full:
                        b_at, step = tail.ctypes.data, nr
                    tile_channels_n(panels, nr, a_at, b_at, step, tile.ctypes.data, k_len)
                    o0 = (n * m_len + mb * LANES) * p + nb * nr
                    for j in range(min(nr, p - nb * nr)):
                        for l in range(rows):
                            of[uint64(o0 + l * p + j)] = tile[uint64(j * height + l)]
                mb += panels


def scratch_shapes(k_len: int, p: int, pointwise: bool, threads: int
                   ) -> dict[str, tuple[int, ...]]:
    """The workspaces _by_images takes: each thread's columns (none for a 1x1 stride-1
    conv) and its copy of the last, partial panel of columns."""
    shapes = {} if pointwise else {"col": (threads * k_len * p,)}
    shapes["packed-columns"] = (threads, k_len * panel_width(p))
    return shapes


_NO_COLUMNS = np.zeros(1, np.float32)   # a 1x1 stride-1 conv reads the image itself


def conv2d_packed_channels(x: np.ndarray, w: np.ndarray, out: np.ndarray,
                           attrs: dict[str, Any], wp: np.ndarray | None = None) -> None:
    """packed_gemm.conv2d_packed_channels, with the images split over the threads where
    `splits_images` (float32, one group); `wp`: packed_conv_weights(w, LANES) made
    already."""
    threads = numba.get_num_threads()
    if not splits_images(x.shape[0], threads):
        packed_gemm.conv2d_packed_channels(x, w, out, attrs, wp)
        return
    wp = packed_gemm.packed_conv_weights(w, LANES) if wp is None else wp
    k_len, p = wp.shape[1], out.shape[2] * out.shape[3]
    pointwise = is_pointwise(w.shape, attrs)
    shapes = scratch_shapes(k_len, p, pointwise, threads)
    col = workspace("col", shapes["col"], np.float32) if "col" in shapes else _NO_COLUMNS
    tails = workspace("packed-columns", shapes["packed-columns"], np.float32)
    (sh, sw), pads, (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    launch(_by_images, wp, x, out, w.shape[0], panel_width(p), w.shape[2], w.shape[3], sh,
           sw, pads[0], pads[2], dh, dw, col, tails, threads, pointwise)



def conv_scratch(x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                 out_hw: tuple[int, int], attrs: dict[str, Any]
                 ) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """What conv2d_packed_channels takes, by role: the image split's where it splits the
    batch (x_shape's, the largest it is built for), else packed_gemm.conv_scratch's."""
    threads = numba.get_num_threads()
    if not splits_images(x_shape[0], threads):
        return packed_gemm.conv_scratch(x_shape, w_shape, out_hw, attrs, LANES)
    k_len = w_shape[1] * w_shape[2] * w_shape[3]
    shapes = scratch_shapes(k_len, out_hw[0] * out_hw[1], is_pointwise(w_shape, attrs),
                            threads)
    return {role: (shape, np.dtype(np.float32)) for role, shape in shapes.items()}
