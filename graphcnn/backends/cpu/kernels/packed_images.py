"""The packed GEMM convolutions (packed_gemm.conv2d_packed_channels, channels in the lanes,
and packed_gemm.conv2d_packed, pixels in the lanes, with its fused epilogue) with the
images split over the threads: each thread takes its share of the batch, builds an
image's im2col columns into its own buffer (a 1x1 stride-1 conv reads the image itself)
and multiplies them at once, alone, with the same tiles in the same order as the
image-by-image kernels (the same bits).

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
from numba import prange

from graphcnn.backends.cpu.kernels import packed_gemm
from graphcnn.backends.cpu.kernels.conv_gemm import _im2col_block, workspace
from graphcnn.backends.cpu.kernels.packed_gemm import (
    LANES,
    MR,
    NR_WIDE,
    channel_tiles,
    copy_tail,
    panel_width,
    pixel_blocks,
    pixel_task,
    rows_epilogue,
)
from graphcnn.backends.cpu.registry import JIT, launch
from graphcnn.ops.conv_shapes import is_pointwise


def splits_images(n_len: int, threads: int) -> bool:
    """Whether a batch of n_len images is split over the threads: every thread gets as
    many images, or enough that one more is a small part of its share."""
    return threads > 1 and n_len >= threads and (n_len % threads == 0
                                                 or n_len >= 4 * threads)


@numba.njit(inline="always")
def _image_columns(xf, cf, n, c_len, in_h, in_w, kh, kw, sh, sw, pt, pl, dh, dw, ow_len, p,
                   c0, pointwise):
    """Image n's (K, P) columns: the image itself for a 1x1 stride-1 conv, else its
    im2col columns, built at cf[c0]."""
    if pointwise:
        return xf[n * c_len * p:(n + 1) * c_len * p].reshape((c_len, p))
    k_len = c_len * kh * kw
    _im2col_block(xf, n * c_len * in_h * in_w, in_h, in_w, c_len, kh, kw, sh, sw, pt, pl, dh,
                  dw, ow_len, 0, p, cf, c0)
    return cf[c0:c0 + k_len * p].reshape((k_len, p))


@numba.njit(**JIT)
def _by_images(ap, x, out, m_len, nr, kh, kw, sh, sw, pt, pl, dh, dw, col, tails, threads,
               pointwise, bias, side, mode, low, high):
    """out[n] = W @ col(x[n]) for W packed as (M/16, K, 16) panels, thread t taking images
    t * N / threads up to (t + 1) * N / threads, its columns in col[t] (`pointwise`: x[n]
    itself) and its copy of the last, partial panel of columns in tails[t]: all of
    packed_gemm._gemm_columns's tiles over one image, then bias and the epilogue (`side`:
    out's shape, or out itself) over that image's output, from the core's cache."""
    n_len, c_len, in_h, in_w = x.shape
    p = out.shape[2] * out.shape[3]
    mb_len, k_len = ap.shape[0], ap.shape[1]
    nb_len = (p + nr - 1) // nr
    xf, cf = x.reshape(x.size), col.reshape(col.size)
    for t in prange(threads):
        tile = np.empty(3 * LANES * NR_WIDE, np.float32)
        for n in range(t * n_len // threads, (t + 1) * n_len // threads):
            b = _image_columns(xf, cf, n, c_len, in_h, in_w, kh, kw, sh, sw, pt, pl, dh, dw,
                               out.shape[3], p, t * k_len * p, pointwise)
            if p % nr:
                copy_tail(b, tails[t], p // nr * nr, nr)
            c, s = out[n].reshape((m_len, p)), side[n].reshape((m_len, p))
            channel_tiles(ap, m_len, 0, mb_len, 0, nb_len, nr, b, tails[t], tile, c)
            if mode:
                rows_epilogue(c, s, bias, 0, m_len, 0, p, mode, low, high)


@numba.njit(**JIT)
def _pixels_by_images(wp, x, out, m_len, kh, kw, sh, sw, pt, pl, dh, dw, col, tails, tiles,
                      threads, pointwise, bias, side, mode, low, high):
    """out[n] = W @ col(x[n]) for W packed as (M/6, K, 6) panels, with bias and the
    epilogue (`side`: out's shape, or out itself) applied before each store, thread t
    taking images t * N / threads up to (t + 1) * N / threads: all of packed_gemm._gemm's
    tasks over one image, in its order (column block by column block), its last N % 16
    columns on tails[t], their tiles in tiles[t]."""
    n_len, c_len, in_h, in_w = x.shape
    o_len, p = out.shape[1], out.shape[2] * out.shape[3]
    ob_len, k_len = wp.shape[0], wp.shape[1]
    xf, cf = x.reshape(x.size), col.reshape(col.size)
    for t in prange(threads):
        for n in range(t * n_len // threads, (t + 1) * n_len // threads):
            b = _image_columns(xf, cf, n, c_len, in_h, in_w, kh, kw, sh, sw, pt, pl, dh, dw,
                               out.shape[3], p, t * k_len * p, pointwise)
            if p % LANES:
                copy_tail(b, tails[t], p // LANES * LANES, LANES)
            c, s = out[n].reshape((o_len, p)), side[n].reshape((o_len, p))
            for nb in range(pixel_blocks(p)):
                for ob in range(ob_len):
                    pixel_task(wp, m_len, nb, ob, b, c, s, tails[t], tiles[t], bias, mode,
                               low, high)


def scratch_shapes(k_len: int, p: int, pointwise: bool, threads: int, width: int,
                   o_len: int) -> dict[str, tuple[int, ...]]:
    """The workspaces _by_images (width LANES) or _pixels_by_images (width MR) take:
    each thread's columns (none for a 1x1 stride-1 conv), its copy of the last, partial
    panel of columns, and (MR) that panel's tiles."""
    shapes = {} if pointwise else {"col": (threads * k_len * p,)}
    if width == LANES:
        shapes["packed-columns"] = (threads, k_len * panel_width(p))
    else:
        shapes["packed-tail"] = (threads, k_len * LANES)
        shapes["packed-tail-tiles"] = (threads, -(-o_len // MR) * MR * LANES)
    return shapes


_NO_COLUMNS = np.zeros(1, np.float32)   # a 1x1 stride-1 conv reads the image itself


def conv2d_packed_channels(x: np.ndarray, w: np.ndarray, out: np.ndarray,
                           attrs: dict[str, Any], wp: np.ndarray | None = None,
                           bias: np.ndarray | None = None, epilogue: Any = None) -> None:
    """packed_gemm.conv2d_packed_channels (with bias and a fused group's epilogue, where
    given, over each image's output once its tiles are stored), with the images split
    over the threads where `splits_images` (float32, one group); `wp`:
    packed_conv_weights(w, LANES) made already."""
    threads = numba.get_num_threads()
    if not splits_images(x.shape[0], threads):
        packed_gemm.conv2d_packed_channels(x, w, out, attrs, wp, bias, epilogue)
        return
    wp = packed_gemm.packed_conv_weights(w, LANES) if wp is None else wp
    k_len, p = wp.shape[1], out.shape[2] * out.shape[3]
    pointwise = is_pointwise(w.shape, attrs)
    shapes = scratch_shapes(k_len, p, pointwise, threads, LANES, w.shape[0])
    col = workspace("col", shapes["col"], np.float32) if "col" in shapes else _NO_COLUMNS
    tails = workspace("packed-columns", shapes["packed-columns"], np.float32)
    (sh, sw), pads, (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    launch(_by_images, wp, x, out, w.shape[0], panel_width(p), w.shape[2], w.shape[3], sh,
           sw, pads[0], pads[2], dh, dw, col, tails, threads, pointwise,
           *packed_gemm.tile_epilogue(w.shape[0], bias, epilogue,
                                      packed_gemm.conv_side(out, epilogue)))


def conv2d_packed(x: np.ndarray, w: np.ndarray, out: np.ndarray, attrs: dict[str, Any],
                  wp: np.ndarray | None = None, bias: np.ndarray | None = None,
                  epilogue: Any = None) -> None:
    """packed_gemm.conv2d_packed (pixels in the lanes, bias and a fused group's epilogue
    applied as each tile is stored), with the images split over the threads where
    `splits_images`; `wp`: packed_conv_weights(w) made already."""
    threads = numba.get_num_threads()
    if not splits_images(x.shape[0], threads):
        packed_gemm.conv2d_packed(x, w, out, attrs, wp, bias, epilogue)
        return
    wp = packed_gemm.packed_conv_weights(w) if wp is None else wp
    o_len, k_len, p = w.shape[0], wp.shape[1], out.shape[2] * out.shape[3]
    pointwise = is_pointwise(w.shape, attrs)
    shapes = scratch_shapes(k_len, p, pointwise, threads, MR, o_len)
    col = workspace("col", shapes["col"], np.float32) if "col" in shapes else _NO_COLUMNS
    tails = workspace("packed-tail", shapes["packed-tail"], np.float32)
    tiles = workspace("packed-tail-tiles", shapes["packed-tail-tiles"], np.float32)
    side = packed_gemm.conv_side(out, epilogue)
    (sh, sw), pads, (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    launch(_pixels_by_images, wp, x, out, o_len, w.shape[2], w.shape[3], sh, sw, pads[0],
           pads[2], dh, dw, col, tails, tiles, threads, pointwise,
           *packed_gemm.tile_epilogue(o_len, bias, epilogue, side))


def conv_scratch(x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                 out_hw: tuple[int, int], attrs: dict[str, Any], width: int
                 ) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """What conv2d_packed_channels (width LANES) or conv2d_packed (MR) takes, by role: the
    image split's where it splits the batch (x_shape's, the largest it is built for), else
    packed_gemm.conv_scratch's."""
    threads = numba.get_num_threads()
    if not splits_images(x_shape[0], threads):
        return packed_gemm.conv_scratch(x_shape, w_shape, out_hw, attrs, width)
    k_len = w_shape[1] * w_shape[2] * w_shape[3]
    shapes = scratch_shapes(k_len, out_hw[0] * out_hw[1], is_pointwise(w_shape, attrs),
                            threads, width, w_shape[0])
    return {role: (shape, np.dtype(np.float32)) for role, shape in shapes.items()}
