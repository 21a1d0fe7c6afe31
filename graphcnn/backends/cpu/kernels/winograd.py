"""Winograd F(2x2, 3x3) convolution for 3x3 kernels at stride 1 (no dilation, no groups).

Each 2x2 block of output pixels (a *tile*) comes from a 4x4 patch d of the padded input:

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise, per channel pair, summed over c)

so the 36 multiply-adds a tile costs per (o, c) pair in a direct or im2col convolution
become 16: the 16 elementwise products, summed over c, are 16 GEMMs

    M[e] (O, T) = U[e] (O, C) @ V[e] (C, T),   e = 4a + b over the 4x4 transformed positions

with U = G g G^T (the weight transform, once per weight), V = B^T d B (the input transform)
and T the tiles. 2.25x fewer GEMM flops than im2col, for two transforms that are additions
only. The tiles are cut into blocks of whole tile rows; a thread transforms its block's
input, runs its 16 GEMMs and transforms their output, so the block's V and M stay in that
core's cache (as in conv_gemm._conv_blocks). Where it wins is measured (autotune.py).
This file has the forward conv and the input gradient (the forward conv of dy with the
weight turned); the weight gradient is in winograd_weight_grad.py.

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]

The transforms are exact in real arithmetic; in float32 the sums round differently from a
direct convolution (relative differences of a few 1e-7 on ResNet's layers).
"""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu import blas
from graphcnn.backends.cpu.aligned import aligned_empty
from graphcnn.backends.cpu.kernels import packed_gemm
from graphcnn.backends.cpu.kernels.conv_gemm import workspace
from graphcnn.backends.cpu.registry import JIT, TASK_JIT, launch

WINOGRAD_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
# A block of tiles holds about this many bytes of V, but at least MIN_BLOCK_TILES tiles:
# each block's 16 GEMMs pack all of U again, so a narrow block spends its time packing.
BLOCK_BYTES = 1 << 20
MIN_BLOCK_TILES = 128
# Where splitting the tiles over the threads leaves blocks narrower than this, the threads
# split the output channels instead (ResNet-18 at batch 1, interleaved runs, median ms:
# 256@14, blocks of 28 tiles, 1.20 -> 1.12; 512@7, 8 tiles, 3.40 -> 2.41; but 128@28, 98
# tiles, 0.99 -> 1.13, so it keeps splitting the tiles).
SPLIT_CHANNELS_BELOW = 64
# Below this many tiles per block the GEMMs are too thin to be worth trying: 32 with
# frozen weights (transformed once), 64 where the weights are transformed at every call
# (ResNet-18 at batch 1: frozen 256@14, 49 tiles a block, 0.65-0.77x im2col's time, but
# 512@7, 16 tiles, 1.1x; 256@14's input gradient, with the transform, 1.57x; 128@28, 98
# tiles, 0.69x).
MIN_TILES_PER_BLOCK = {True: 32, False: 64}


def applies(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, Any]) -> bool:
    """3x3 kernels at stride 1, no dilation, one group (any padding: the input transform
    reads zeros outside the image), with numpy's OpenBLAS to call."""
    return (blas.AVAILABLE and tuple(w_shape[2:]) == (3, 3) and attrs["groups"] == 1
            and tuple(attrs["stride"]) == (1, 1) and tuple(attrs["dilation"]) == (1, 1))


def tiles(out_hw: tuple[int, int], tile: int = 2) -> tuple[int, int]:
    """(tiles down, tiles across) of an output map, for tiles of tile x tile pixels."""
    return -(-out_hw[0] // tile), -(-out_hw[1] // tile)


def _per_pixels(count: int, tile: int) -> int:
    """A tile count stated for 2x2 tiles, for tiles of tile x tile pixels (as many pixels)."""
    return max(1, count * 4 // (tile * tile))


def block_rows(n_len: int, out_hw: tuple[int, int], c_len: int, itemsize: int,
               threads: int, min_tiles: int = MIN_BLOCK_TILES, tile: int = 2,
               block_bytes: int = BLOCK_BYTES) -> int:
    """Tile rows per block: about BLOCK_BYTES of V (at least min_tiles tiles, stated for
    2x2 tiles), and a block count that is a multiple of the thread count, so every thread
    gets as many. `tile`: the output pixels a tile spans each way (winograd4.py's 4)."""
    th, tw = tiles(out_hw, tile)
    rows = n_len * th  # the tile rows of all the images, in a row
    wanted = max(_per_pixels(min_tiles, tile),
                 block_bytes // ((tile + 2) ** 2 * c_len * itemsize))
    blocks = -(-rows // max(1, -(-wanted // tw)))
    blocks = max(threads, -(-blocks // threads) * threads)
    return max(1, -(-rows // blocks))


def forward_plan(n_len: int, out_hw: tuple[int, int], c_len: int, itemsize: int,
                 threads: int, tile: int = 2, block_bytes: int = BLOCK_BYTES
                 ) -> tuple[int, int]:
    """(tile rows per block, output-channel parts) for _winograd: the threads split the
    tiles, unless that leaves blocks under SPLIT_CHANNELS_BELOW tiles (every block packs
    all of U again); then each thread takes all the tiles (in blocks of BLOCK_BYTES or
    more) and its share of the output channels. Counts of tiles are stated for 2x2 tiles
    and scaled to `tile`'s by their pixels."""
    per = block_rows(n_len, out_hw, c_len, itemsize, threads, tile=tile,
                     block_bytes=block_bytes)
    th, tw = tiles(out_hw, tile)
    if per * tw >= _per_pixels(SPLIT_CHANNELS_BELOW, tile) or threads == 1:
        return per, 1
    wanted = max(_per_pixels(MIN_BLOCK_TILES, tile),
                 block_bytes // ((tile + 2) ** 2 * c_len * itemsize))
    return min(n_len * th, max(1, -(-wanted // tw))), threads


def worth_trying(n_len: int, out_hw: tuple[int, int], c_len: int, itemsize: int,
                 threads: int, frozen_weights: bool) -> bool:
    """Whether the forward-shaped Winograd conv of n_len images of c_len channels to
    out_hw has wide enough blocks (the cost model's default, and what autotune measures)."""
    per, _ = forward_plan(n_len, out_hw, c_len, itemsize, threads)
    return per * tiles(out_hw)[1] >= MIN_TILES_PER_BLOCK[frozen_weights]


@numba.njit(inline="always")
def gathered_taps(wf, row, cols, c_len, flip):
    """The 3x3 taps of row `row` of the flat weight wf (O, C, 3, 3) as 9 contiguous runs in
    float64: g[(3i + j) * cols + col] = w[row, col, i, j], or with `flip` (the input
    gradient's weight, turned and transposed) w[col, row, 2 - i, 2 - j]."""
    g = np.empty(9 * cols, np.float64)
    for col in range(cols):
        src = (col * c_len + row) * 9 if flip else (row * c_len + col) * 9
        for ij in range(9):
            g[uint64(ij * cols + col)] = wf[uint64(src + (8 - ij if flip else ij))]
    return g


@numba.njit(**JIT)
def transform_weights(w, u, flip):
    """u[4a + b, o, c] = (G w[o, c] G^T)[a, b]; with `flip`, the weight of the input
    gradient, w'[c, o] = w[o, c] turned by 180 degrees: u[4a + b, c, o] = (G w' G^T)[a, b].
    One task per row of u: its taps are gathered into 9 contiguous runs first, so each
    step of G g G^T is one vectorized loop along the row."""
    o_len, c_len = w.shape[0], w.shape[1]
    rows, cols = (c_len, o_len) if flip else (o_len, c_len)
    wf, uf = w.reshape(w.size), u.reshape(u.size)
    plane = rows * cols
    for row in prange(rows):
        g = gathered_taps(wf, row, cols, c_len, flip)  # g[(3i + j) * cols + col]
        r = np.empty(12 * cols, np.float64)  # G g: r[(3a + j) * cols + col]
        for j in range(3):
            for col in range(cols):
                g0, g1 = g[uint64(j * cols + col)], g[uint64((3 + j) * cols + col)]
                g2 = g[uint64((6 + j) * cols + col)]
                r[uint64(j * cols + col)] = g0
                r[uint64((3 + j) * cols + col)] = 0.5 * (g0 + g1 + g2)
                r[uint64((6 + j) * cols + col)] = 0.5 * (g0 - g1 + g2)
                r[uint64((9 + j) * cols + col)] = g2
        for a in range(4):  # (G g) G^T
            d = 4 * a * plane + row * cols
            for col in range(cols):
                r0, r1 = r[uint64(3 * a * cols + col)], r[uint64((3 * a + 1) * cols + col)]
                r2 = r[uint64((3 * a + 2) * cols + col)]
                uf[uint64(d + col)] = r0
                uf[uint64(d + plane + col)] = 0.5 * (r0 + r1 + r2)
                uf[uint64(d + 2 * plane + col)] = 0.5 * (r0 - r1 + r2)
                uf[uint64(d + 3 * plane + col)] = r2


@numba.njit(inline="always")
def padded_rows(xf, src, y0, count, in_h, in_w, left, width, pad):
    """pad[i * width + k] = the image at xf[src:] (in_h x in_w), row y0 + i, column
    k - left, for i < count and k < width: zero outside the image."""
    for i in range(count):
        y = y0 + i
        p0 = i * width
        if y < 0 or y >= in_h:
            for k in range(width):
                pad[uint64(p0 + k)] = 0
            continue
        lo, hi = min(left, width), min(width, left + in_w)
        for k in range(lo):
            pad[uint64(p0 + k)] = 0
        s = src + y * in_w - left
        for k in range(lo, hi):
            pad[uint64(p0 + k)] = xf[uint64(s + k)]
        for k in range(hi, width):
            pad[uint64(p0 + k)] = 0


@numba.njit(**TASK_JIT)
def _input_transform(xf, c_len, in_h, in_w, pt, pl, row0, th, tw, tb, vf, v0, pad, rows):
    """V for the tb // tw tile rows from row0 (tile rows of all images in a row, th per
    image): vf[v0 + (e * C + c) * tb + t]. The row pass (B^T d) runs along whole padded
    rows, which vectorizes; the column pass reads them at stride 2."""
    width = 2 * tw + 2
    count = tb // tw
    for c in range(c_len):
        for r in range(count):
            n, ty = (row0 + r) // th, (row0 + r) % th
            src = (n * c_len + c) * in_h * in_w
            y0 = 2 * ty - pt
            padded_rows(xf, src, y0, 4, in_h, in_w, pl, width, pad)
            for k in range(width):  # rows of B^T d
                d0, d1 = pad[uint64(k)], pad[uint64(width + k)]
                d2, d3 = pad[uint64(2 * width + k)], pad[uint64(3 * width + k)]
                rows[uint64(k)] = d0 - d2
                rows[uint64(width + k)] = d1 + d2
                rows[uint64(2 * width + k)] = d2 - d1
                rows[uint64(3 * width + k)] = d1 - d3
            t0 = r * tw
            for a in range(4):  # (B^T d) B, tile by tile
                base = a * width
                e0 = v0 + ((4 * a) * c_len + c) * tb + t0
                step = c_len * tb
                for tx in range(tw):
                    q = base + 2 * tx
                    r0, r1 = rows[uint64(q)], rows[uint64(q + 1)]
                    r2, r3 = rows[uint64(q + 2)], rows[uint64(q + 3)]
                    vf[uint64(e0 + tx)] = r0 - r2
                    vf[uint64(e0 + step + tx)] = r1 + r2
                    vf[uint64(e0 + 2 * step + tx)] = r2 - r1
                    vf[uint64(e0 + 3 * step + tx)] = r1 - r3


@numba.njit(inline="always")
def _four(f, q, step):
    return (f[uint64(q)], f[uint64(q + step)], f[uint64(q + 2 * step)],
            f[uint64(q + 3 * step)])


@numba.njit(**TASK_JIT)
def _output_transform(mf, m0, o_len, o0, o_rows, tb, row0, th, tw, of, oh_len, ow_len,
                      line):
    """The output rows of channels o0 <= o < o0 + o_rows (of o_len) for the tb // tw tile
    rows from row0, from M (mf[m0 + (e * o_rows + o - o0) * tb + t]) by Y = A^T M A."""
    count = tb // tw
    width = 2 * tw
    step = o_rows * tb
    for oo in range(o_rows):
        o = o0 + oo
        for r in range(count):
            t0 = m0 + oo * tb + r * tw
            for tx in range(tw):
                q = t0 + tx
                m0_, m1, m2, m3 = _four(mf, q, step)
                m4, m5, m6, m7 = _four(mf, q + 4 * step, step)
                m8, m9, m10, m11 = _four(mf, q + 8 * step, step)
                m12, m13, m14, m15 = _four(mf, q + 12 * step, step)
                # s = A^T M (2 x 4), then Y = s A (2 x 2)
                s00, s01, s02, s03 = m0_ + m4 + m8, m1 + m5 + m9, m2 + m6 + m10, m3 + m7 + m11
                s10, s11 = m4 - m8 - m12, m5 - m9 - m13
                s12, s13 = m6 - m10 - m14, m7 - m11 - m15
                line[uint64(2 * tx)] = s00 + s01 + s02
                line[uint64(2 * tx + 1)] = s01 - s02 - s03
                line[uint64(width + 2 * tx)] = s10 + s11 + s12
                line[uint64(width + 2 * tx + 1)] = s11 - s12 - s13
            n, oy = (row0 + r) // th, 2 * ((row0 + r) % th)
            for i in range(2):
                if oy + i < oh_len:
                    d0 = ((n * o_len + o) * oh_len + oy + i) * ow_len
                    for k in range(ow_len):
                        of[uint64(d0 + k)] = line[uint64(i * width + k)]


@numba.njit(inline="always")
def tiling(n_len, oh_len, ow_len, per_block, tile):
    """(tiles down, tiles across, tile rows of all the images, blocks of per_block rows),
    for tiles of tile x tile output pixels (2 here, winograd4.py's 4)."""
    th, tw = (oh_len + tile - 1) // tile, (ow_len + tile - 1) // tile
    rows = n_len * th
    return th, tw, rows, (rows + per_block - 1) // per_block


def channel_step(o_len: int, o_parts: int, packed: bool) -> int:
    """Output channels per part: with `packed`, whole panels of 16."""
    step = (o_len + o_parts - 1) // o_parts
    if packed:
        step = (step + packed_gemm.LANES - 1) // packed_gemm.LANES * packed_gemm.LANES
    return step


_channel_step = numba.njit(inline="always")(channel_step)  # the kernels' copy


@numba.njit(**TASK_JIT)
def _packed_products(up, v, v0, c_len, tb, mf, m0, o0, o_rows, tile):
    """M[e] = U[e] @ V[e] for the block's tb tiles and output channels o0 <= o < o0 + o_rows
    (o0 a multiple of 16), with U packed as (16, O/16, C, 16) panels (weight_transform(w,
    packed=True)) and V read in place (vf[v0 + (e * C + c) * tb + t]): packed_gemm's
    microkernel, 16 to 48 output channels by NR tiles a step, into
    mf[m0 + (e * o_rows + o - o0) * tb + t]. The last step of a block reads up to NR - 1 values past its V (the slack
    _run leaves), for columns that are thrown away."""
    first = o0 // packed_gemm.LANES
    panels = (o_rows + packed_gemm.LANES - 1) // packed_gemm.LANES
    for e in range(up.shape[0]):   # 16 positions, or winograd4.py's 36
        p = 0
        while p < panels:   # up to three panels a tile (packed_gemm.panel_group)
            group = packed_gemm.panel_group(panels - p)
            height = group * packed_gemm.LANES
            rows = min(height, o_rows - p * packed_gemm.LANES)
            a_at = up.ctypes.data + (e * up.shape[1] + first + p) * c_len * packed_gemm.LANES * 4
            for t0 in range(0, tb, packed_gemm.NR):
                packed_gemm.tile_channels_n(
                    group, packed_gemm.NR, a_at,
                    v.ctypes.data + (v0 + e * c_len * tb + t0) * 4, tb, tile.ctypes.data, c_len)
                for j in range(min(packed_gemm.NR, tb - t0)):
                    for l in range(rows):
                        mf[uint64(m0 + (e * o_rows + p * packed_gemm.LANES + l) * tb + t0
                                  + j)] = tile[uint64(j * height + l)]
            p += group


if blas.AVAILABLE:
    @numba.njit(**JIT)
    def _winograd(x, u, out, pt, pl, per_block, o_parts, v, m, scratch, packed, tiles):
        """out = conv2d(x, w) for u = transform_weights(w) (or, with `packed`, u =
        weight_transform(w, packed=True)), in blocks of `per_block` tile rows (of all images in
        a row). Thread k (slot k of v, m, scratch and tiles) runs one run of blocks for one
        of `o_parts` ranges of output channels: with o_parts = 1 the threads split the
        tiles; with as many parts as threads each thread takes all the tiles (transforming
        the input again) and reads (OpenBLAS: packs) only its rows of U, which is what a
        layer with few tiles (ResNet's 512@7 at batch 1) needs."""
        c_len, in_h, in_w = x.shape[1], x.shape[2], x.shape[3]
        o_len, oh_len, ow_len = out.shape[1], out.shape[2], out.shape[3]
        th, tw, rows, blocks = tiling(x.shape[0], oh_len, ow_len, per_block, 2)
        slots = v.shape[0]
        row_parts = slots // o_parts
        per_slot = (blocks + row_parts - 1) // row_parts
        o_step = _channel_step(o_len, o_parts, packed)
        size = x.itemsize
        double = size == 8
        xf, of = x.reshape(x.size), out.reshape(out.size)
        vf, mf = v.reshape(v.size), m.reshape(m.size)
        width = 2 * tw + 2
        for slot in prange(slots):
            part, o0 = slot // o_parts, (slot % o_parts) * o_step
            o_rows = min(o_len, o0 + o_step) - o0
            if o_rows <= 0:
                continue
            v0, m0 = slot * v.shape[1], slot * m.shape[1]
            pad, line_rows, line = scratch[slot, :4 * width], scratch[slot, 4 * width:8 * width], \
                scratch[slot, 8 * width:8 * width + 4 * tw]
            for blk in range(part * per_slot, min(blocks, (part + 1) * per_slot)):
                row0 = blk * per_block
                tb = (min(rows, row0 + per_block) - row0) * tw
                _input_transform(xf, c_len, in_h, in_w, pt, pl, row0, th, tw, tb, vf, v0, pad,
                                 line_rows)
                if packed:
                    _packed_products(u, v, v0, c_len, tb, mf, m0, o0, o_rows, tiles[slot])
                else:
                    for e in range(16):
                        blas.gemm_call(double, False, False, o_rows, tb, c_len,
                                       u.ctypes.data + (e * o_len + o0) * c_len * size, c_len,
                                       v.ctypes.data + (v0 + e * c_len * tb) * size, tb, 0.0,
                                       m.ctypes.data + (m0 + e * o_rows * tb) * size, tb)
                _output_transform(mf, m0, o_len, o0, o_rows, tb, row0, th, tw, of, oh_len,
                                  ow_len, line)


def weight_transform(w: np.ndarray, flip: bool = False, packed: bool = False) -> np.ndarray:
    """U = G w G^T as (16, O, C) (with `flip`: of the input gradient's weight, (16, C, O);
    with `packed`, float32, as (16, O/16, C, 16) panels for packed_gemm's microkernel). The
    cpu strategy transforms a frozen weight once, when its node's implementation is built,
    and passes U to the conv; a live one (a parameter in training) is transformed at every
    call."""
    shape = (16, w.shape[1], w.shape[0]) if flip else (16, w.shape[0], w.shape[1])
    u = aligned_empty(shape, w.dtype)
    launch(transform_weights, w, u, flip)
    if packed:
        width = packed_gemm.LANES
        panels = aligned_empty((16, -(-shape[1] // width), shape[2], width), np.float32)
        for e in range(16):
            launch(packed_gemm.pack_panels, u[e], panels[e])
        u = panels
    return u


def run_scratch(x_shape: tuple[int, ...], out_shape: tuple[int, ...], dtype: Any,
                packed: bool = False) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The workspaces _run takes for x (N, C, H, W) into out (N, O, OH, OW), by role in
    the order it takes them: per thread, a block's V and M, the transforms' rows, and the
    microkernel's tile."""
    dtype = np.dtype(dtype)
    n_len, c_len = x_shape[:2]
    o_len, out_hw = out_shape[1], (out_shape[2], out_shape[3])
    tw = tiles(out_hw)[1]
    threads = numba.get_num_threads()
    per_block, o_parts = forward_plan(n_len, out_hw, c_len, dtype.itemsize, threads)
    cap = per_block * tw
    slack = packed_gemm.NR if packed else 0  # what _packed_products reads past V
    o_step = channel_step(o_len, o_parts, packed)
    return {"winograd-v": ((threads, 16 * c_len * cap + slack), dtype),
            "winograd-m": ((threads, 16 * o_step * cap), dtype),
            "winograd-rows": ((threads, 8 * (2 * tw + 2) + 4 * tw), dtype),
            "winograd-tile": ((threads, 3 * packed_gemm.LANES * packed_gemm.NR),
                              np.dtype(np.float32))}


def _run(x: np.ndarray, u: np.ndarray, out: np.ndarray, pt: int, pl: int,
         packed: bool = False) -> None:
    """out = the Winograd convolution of x with transformed weights u (16, O, C), or
    (`packed`) u packed in panels by weight_transform(.., packed=True)."""
    threads = numba.get_num_threads()
    per_block, o_parts = forward_plan(x.shape[0], out.shape[2:], x.shape[1], x.itemsize,
                                      threads)
    buffers = {role: workspace(role, *spec)
               for role, spec in run_scratch(x.shape, out.shape, x.dtype, packed).items()}
    v, m, scratch, tile = (buffers[role] for role in ("winograd-v", "winograd-m",
                                                      "winograd-rows", "winograd-tile"))
    slack = packed_gemm.NR if packed else 0  # what _packed_products reads past V
    v[:, v.shape[1] - slack:] = 0
    # U as 4-d either way ((16, O, C) with a unit axis): one compiled _winograd, not two
    u4 = u if u.ndim == 4 else u.reshape(*u.shape, 1)
    with blas.one_thread_pool():
        launch(_winograd, x, u4, out, pt, pl, per_block, o_parts, v, m, scratch, packed, tile)


def conv2d_winograd(x: np.ndarray, w: np.ndarray, out: np.ndarray, attrs: dict[str, Any],
                    u: np.ndarray | None = None) -> None:
    """out = conv2d(x, w) without bias, for a convolution `applies` accepts; `u`: w
    transformed already (weight_transform(w)), else transformed here."""
    pads = attrs["padding"]
    _run(x, weight_transform(w) if u is None else u, out, pads[0], pads[2])


def packed_applies(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, Any],
                   dtype: Any) -> bool:
    """Where conv2d_winograd_packed runs: a float32 conv `applies` accepts."""
    return np.dtype(dtype) == np.float32 and applies(x_shape, w_shape, attrs)


def conv2d_winograd_packed(x: np.ndarray, w: np.ndarray, out: np.ndarray,
                           attrs: dict[str, Any], u: np.ndarray | None = None) -> None:
    """conv2d_winograd with the 16 products M[e] = U[e] @ V[e] run by packed_gemm's
    microkernel on U packed once (frozen weights: `u`, weight_transform(w, packed=True))
    instead of OpenBLAS, which packs U again for every block: float32."""
    pads = attrs["padding"]
    _run(x, weight_transform(w, packed=True) if u is None else u, out, pads[0], pads[2],
         packed=True)


def input_grad_applies(w_shape: tuple[int, ...], attrs: dict[str, Any]) -> bool:
    """The input gradient of such a conv is the forward conv of dy with the weight turned
    and transposed, padded by 2 - p on each side: p <= 2 (any 'same' 3x3 conv)."""
    return applies((0, w_shape[1]) + (0, 0), w_shape, attrs) and max(attrs["padding"]) <= 2


def conv2d_input_grad_winograd(dy: np.ndarray, w: np.ndarray, dx: np.ndarray,
                               attrs: dict[str, Any], u: np.ndarray | None = None,
                               packed: bool = False) -> None:
    """dx = conv2d_input_grad(dy, w), for a convolution `input_grad_applies` accepts; `u`:
    weight_transform(w, flip=True, packed=packed) made already (`packed`: the products on
    packed_gemm's microkernel, float32, as conv2d_winograd_packed)."""
    pads = attrs["padding"]
    u = weight_transform(w, flip=True, packed=packed) if u is None else u
    _run(dy, u, dx, 2 - pads[0], 2 - pads[2], packed=packed)
