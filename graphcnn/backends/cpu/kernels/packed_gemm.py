"""A float32 GEMM with packed weights and a register-blocked microkernel written in LLVM IR
(packed_tiles.py):
c (M, N) = W (M, K) @ b (K, N), for convolutions (W the filters, b the im2col columns or,
for a 1x1 convolution, the image itself).

Why not OpenBLAS here: it packs both operands at every call, and a convolution's weights
never change in inference, while its columns are already laid out for streaming. Here the
weights are packed once, as (M/6, K, 6) panels, and the columns are read in place: the
microkernel keeps a 6 x 16 block of c in six 16-lane vector registers (six output channels
by 16 pixels), and per k it loads 16 pixels of b's row k, broadcasts the six weights and
issues six fused multiply-adds. Numba cannot be made to keep such a block in registers
(its loops over local arrays spill the block to memory), so the microkernel is an
`intrinsic` that emits the vector code itself: <16 x float> values, llvm.fma, one loop.

It is not faster everywhere: a row of 49 pixels (ResNet's 512@7) fills four vectors for
3.06 vectors of work, which the variant with output channels in the lanes (below) avoids;
the cpu strategy lets the autotuner pick per layer (benchmarks/RESULTS.md has the
measurements).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu.aligned import aligned_empty
from graphcnn.backends.cpu.kernels import conv_gemm
from graphcnn.backends.cpu.kernels.conv_gemm import workspace
from graphcnn.backends.cpu.kernels.packed_tiles import (
    MR,
    NR,
    NR_WIDE,
    WIDEST,
    _tile,
    _tile_n,
    tile_channels_n,
)
from graphcnn.backends.cpu.kernels.vector_ir import (
    ADD_BIAS,
    ADD_SIDE,
    CLIP,
    LANES,
    RELU,
    prefetch_rows,
)
from graphcnn.backends.cpu.registry import JIT, launch
from graphcnn.ops.conv_shapes import is_pointwise


@numba.njit(**JIT)
def pack_panels(src, dst):
    """dst[p, k, r] = src[p * R + r, k], R = dst.shape[2] (zero past src's last row): the
    weights as panels of R rows."""
    m_len, k_len = src.shape
    width = dst.shape[2]
    for p in prange(dst.shape[0]):
        for k in range(k_len):
            for r in range(width):
                m = p * width + r
                dst[p, k, r] = src[m, k] if m < m_len else 0


@numba.njit(**JIT)
def _gemm(wp, b, c, m_len, tail, blocks_out, bias, side, mode, low, high):
    """c (M, N) = W @ b for W packed in wp; b and c may be row-strided views (b's rows
    contiguous); then, by `mode`, bias (M,) and the epilogue (side: c's shape and strides;
    c itself when absent) applied before each store. The last N % 16 columns run on
    `tail`, a (K, 16) zero-padded copy, each weight panel's tile into its row of
    `blocks_out` (M/6, 6 * 16) before the copy to c, which applies the same epilogue.
    Tasks go column block by column block, all the weight panels over one block of b
    before the next: the block (K rows of up to 64 pixels) is read from memory once and stays
    in the core's cache while the panels pass (one panel after the other over every block
    would read the columns M / 6 times)."""
    ob_len, n_len = wp.shape[0], b.shape[1]
    if n_len % LANES:
        copy_tail(b, tail.reshape(tail.size), n_len // LANES * LANES, LANES)
    for task in prange(ob_len * pixel_blocks(n_len)):
        pixel_task(wp, m_len, task // ob_len, task % ob_len, b, c, side, tail, blocks_out,
                   bias, mode, low, high)


@numba.njit(inline="always")
def pixel_blocks(n_len):
    """The column blocks of _gemm's tasks over N columns: blocks of WIDEST vectors (64
    pixels), one of the whole vectors left, then the partial vector."""
    full = n_len // LANES
    return full // WIDEST + (1 if full % WIDEST else 0) + (1 if n_len % LANES else 0)


@numba.njit(inline="always")
def copy_tail(b, tail, n0, width):
    """tail[k * width + j] = b[k, n0 + j], zero past b's last column: the last, partial
    panel of columns as the tiles read it (none reads past b's end)."""
    k_len, n_len = b.shape
    for k in range(k_len):
        for j in range(width):
            n = n0 + j
            tail[k * width + j] = b[k, n] if n < n_len else 0


@numba.njit(inline="always")
def pixel_task(wp, m_len, nb, ob, b, c, side, tail, blocks_out, bias, mode, low, high):
    """One of _gemm's tasks: weight panel ob over column block nb (pixel_blocks) of
    c = W @ b, with the epilogue; the partial vector of columns from `tail` (copy_tail,
    16 wide), its tile through ob's row of `blocks_out`."""
    k_len, n_len = wp.shape[1], b.shape[1]
    ldb, ldc = b.strides[0] // 4, c.strides[0] // 4
    full = n_len // LANES
    wide, rest = full // WIDEST, full % WIDEST
    rows = min(MR, m_len - ob * MR)
    w_at = wp.ctypes.data + ob * k_len * MR * 4
    bias_at = bias.ctypes.data + ob * MR * 4
    if nb < wide or (nb == wide and rest):
        q0 = nb * WIDEST * LANES
        at = (ob * MR * ldc + q0) * 4
        _tile_n(WIDEST if nb < wide else rest, w_at, b.ctypes.data + q0 * 4, ldb,
                c.ctypes.data + at, ldc, k_len, rows, bias_at, side.ctypes.data + at,
                mode, low, high)
    else:
        tile_values = blocks_out.reshape(blocks_out.size)
        at = ob * MR * LANES  # this panel's tile in blocks_out (no view per task)
        scratch = blocks_out.ctypes.data + at * 4
        _tile(w_at, tail.ctypes.data, LANES, scratch, LANES, k_len, rows, bias_at,
              scratch, 0, low, high)
        for r in range(rows):
            for q in range(n_len - full * LANES):
                m, n = ob * MR + r, full * LANES + q
                c[m, n] = epilogue(tile_values[uint64(at + r * LANES + q)], bias[m],
                                   side[m, n], mode, low, high)


@numba.njit(inline="always")
def epilogue(value, bias, side, mode, low, high):
    """One value through the tile's epilogue (ADD_BIAS, ADD_SIDE, CLIP, RELU), as the
    vector code computes it."""
    if mode & ADD_BIAS:
        value = value + bias
    if mode & ADD_SIDE:
        value = value + side
    if mode & CLIP:
        value = low if value < low else (high if value > high else value)
    if mode & RELU:
        value = np.float32(0) if value <= 0 else value
    return value


def packed(w2: np.ndarray, width: int = MR) -> np.ndarray:
    """w2 (M, K) as panels of `width` rows (MR for _gemm, LANES for _gemm_columns). The cpu
    strategy packs a frozen weight once, when its node's implementation is built; a live
    one is packed at every call."""
    wp = aligned_empty((-(-w2.shape[0] // width), w2.shape[1], width), np.float32)
    launch(pack_panels, w2, wp)
    return wp


def matmul_packed(wp: np.ndarray, m_len: int, b: np.ndarray, c: np.ndarray,
                  bias: np.ndarray | None = None, epilogue: Any = None) -> None:
    """c = W @ b for float32 W packed by `packed`; b and c 2-d with contiguous rows; then
    bias (M,) added to each row and `epilogue` applied, if given (an nchw16c_conv.Epilogue,
    its side of c's shape and strides), before each store."""
    k_len = wp.shape[1]
    tail = workspace("packed-tail", (k_len, LANES), np.float32)
    blocks_out = workspace("packed-tail-tiles", (wp.shape[0], MR * LANES), np.float32)
    side = c if epilogue is None or epilogue.side is None else epilogue.side
    if side.shape != c.shape or side.strides != c.strides:
        raise ValueError(f"the epilogue's side {side.shape} is not laid out as the "
                         f"product's output {c.shape}")
    launch(_gemm, wp, b, c, m_len, tail, blocks_out, *tile_epilogue(m_len, bias, epilogue, side))


def tile_epilogue(m_len: int, bias: np.ndarray | None, epilogue: Any, side: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, int, np.float32, np.float32]:
    """(bias, side, mode, low, high) as the pixels-in-lanes tiles take them: a bias of
    zeros where there is none (the tiles read one either way), ADD_BIAS in the mode where
    there is, and the epilogue's mode and bounds (an nchw16c_conv.Epilogue, or None)."""
    mode, low, high = 0, np.float32(0), np.float32(0)
    if epilogue is not None:
        mode, low, high = epilogue.mode, np.float32(epilogue.low), np.float32(epilogue.high)
    if bias is None:
        bias = zero_bias(m_len)
    else:
        mode |= ADD_BIAS
    return bias, side, mode, low, high


def conv_side(out: np.ndarray, epilogue: Any) -> np.ndarray:
    """The array a conv's tiles read the epilogue's side from: the side made contiguous
    (they index it as they index out), or out itself where there is none (the tiles take an
    array either way, and read it only where the mode adds it)."""
    if epilogue is None or epilogue.side is None:
        return out
    return np.ascontiguousarray(epilogue.side)


@functools.lru_cache(maxsize=64)
def zero_bias(length: int) -> np.ndarray:
    """A bias of zeros, never written (the tiles read a bias whether they add it or not)."""
    return np.zeros(length, np.float32)


@numba.njit(inline="always")
def panel_group(left):
    """How many of the `left` weight panels the next tile takes: three, but two and two
    for the last four (a lone panel runs at half speed), two for the last two."""
    if left >= 3 and left != 4:
        return 3
    return min(left, 2)


def panel_width(n_len: int) -> int:
    """NR or NR_WIDE, whichever leaves fewer columns over in the last panel (NR on a tie)."""
    return NR_WIDE if -n_len % NR_WIDE < -n_len % NR else NR


# b's columns are read where they lie, nr of a row at a time: no packed copy. A copy cost
# more than the product's own reads of b, and one packed by one core and read by the
# other costs, at the next packing, the other core's copies of its lines (a write over
# lines the other core read takes 1.8x to 10x the time of one over the writer's own,
# depending on where the host puts the two cores: bench/cross_core.py). Reading in place,
# ResNet-50's 2048 -> 512 channels at 7x7 took 0.46-0.55 ms against 0.50-0.80 packed,
# 992 -> 128 0.06-0.08 against 0.08-0.19 (benchmarks/RESULTS.md). Only the last, partial
# panel is copied, by each thread that computes it, into its own row of the scratch (zero
# past the last column), so no read passes the end of b. With enough panels the threads
# split the columns, else the weight panels.
COLUMN_SPLIT = 4  # panels per thread from which the threads split the columns


def columns_split(m_len: int, n_len: int, threads: int) -> bool:
    """Whether the threads split the columns (each reading every weight) of an (M, N)
    product, else the weight panels (each reading every column): the columns where there
    are enough of them and the weights are no more than the columns."""
    return m_len <= n_len and -(-n_len // panel_width(n_len)) >= COLUMN_SPLIT * threads


def columns_scratch(k_len: int, n_len: int, threads: int) -> tuple[int, int]:
    """The scratch of matmul_packed_channels: each thread's copy of the last, partial
    panel, (threads, K * nr)."""
    return threads, k_len * panel_width(n_len)


@numba.njit(**JIT)
def _gemm_columns(ap, b, c, m_len, nr, tails, threads, by_columns, bias, side, mode, low,
                  high):
    """c (M, N) = W @ b, W packed as (M/16, K, 16) panels, b's columns read nr at a time
    (nr = NR or NR_WIDE) in place, the threads splitting the columns or the weight panels
    (see COLUMN_SPLIT); bias and the epilogue (tile_epilogue's) then applied over each
    thread's part of c (rows_epilogue)."""
    mb_len, n_len = ap.shape[0], c.shape[1]
    nb_len = (n_len + nr - 1) // nr
    for t in prange(threads):
        tile = np.empty(3 * LANES * NR_WIDE, np.float32)
        if by_columns:
            nb0, nb1, mb0, mb1 = t * nb_len // threads, (t + 1) * nb_len // threads, 0, mb_len
        else:
            nb0, nb1, mb0, mb1 = 0, nb_len, t * mb_len // threads, (t + 1) * mb_len // threads
        if nb1 > n_len // nr and mb1 > mb0:  # this thread computes the partial panel
            copy_tail(b, tails[t], n_len // nr * nr, nr)
        channel_tiles(ap, m_len, mb0, mb1, nb0, nb1, nr, b, tails[t], tile, c)
        if mode:   # over this thread's part of c, then in its core's cache
            rows_epilogue(c, side, bias, mb0 * LANES, min(mb1 * LANES, m_len), nb0 * nr,
                          min(nb1 * nr, n_len), mode, low, high)


@numba.njit(inline="always")
def channel_tiles(ap, m_len, mb0, mb1, nb0, nb1, nr, b, tail, tile, c):
    """c = W @ b on weight panels mb0..mb1 by column panels nb0..nb1 (nr columns each, the
    last, partial one from `tail`: copy_tail's), through the scratch `tile`. Up to three
    weight panels at a time over all the columns: they stay in the core's cache across
    them."""
    k_len, n_len = ap.shape[1], c.shape[1]
    full, ldb, ldc = n_len // nr, b.strides[0] // 4, c.strides[0] // 4
    mb = mb0
    while mb < mb1:
        panels = panel_group(mb1 - mb)
        a_at = ap.ctypes.data + mb * k_len * LANES * 4
        height = panels * LANES   # a tile column's rows
        rows = min(height, m_len - mb * LANES)
        for nb in range(nb0, nb1):
            if nb + 1 < nb1:   # the next tile's output lines (packed_tiles.PREFETCH_AHEAD)
                prefetch_rows(c.ctypes.data + (mb * LANES * ldc + (nb + 1) * nr) * 4, ldc,
                              rows)
            b_at, step = b.ctypes.data + nb * nr * 4, ldb
            if nb == full:
                b_at, step = tail.ctypes.data, nr
            tile_channels_n(panels, nr, a_at, b_at, step, tile.ctypes.data, k_len)
            for j in range(min(nr, n_len - nb * nr)):
                for l in range(rows):
                    c[mb * LANES + l, nb * nr + j] = tile[uint64(j * height + l)]
        mb += panels


@numba.njit(inline="always")
def rows_epilogue(c, side, bias, m0, m1, n0, n1, mode, low, high):
    """c[m0:m1, n0:n1] through bias and the epilogue in place (epilogue()'s order), one
    operation at a time along each row, in loops that vectorize; `side`: c's shape. The
    channels-in-lanes GEMM runs it over a thread's whole part of c (an image's, in
    packed_images) once its tiles are stored, from the core's cache: run over each group
    of panels' rows between their tiles, bias and relu took 1.2-1.5 ms more on two threads
    (16 x 256 -> 1024 1x1 @14, against 0.1-0.3 here; benchmarks/RESULTS.md)."""
    for m in range(m0, m1):
        row, by = c[m, n0:n1], side[m, n0:n1]   # (rows as views: the loops vectorize)
        if mode & ADD_BIAS:
            b = bias[m]
            for n in range(row.shape[0]):
                row[n] += b
        if mode & ADD_SIDE:
            for n in range(row.shape[0]):
                row[n] += by[n]
        if mode & CLIP:
            for n in range(row.shape[0]):
                v = row[n]
                row[n] = low if v < low else (high if v > high else v)
        if mode & RELU:
            for n in range(row.shape[0]):
                v = row[n]
                row[n] = np.float32(0) if v <= 0 else v


def matmul_packed_channels(ap: np.ndarray, m_len: int, b: np.ndarray, c: np.ndarray,
                           bias: np.ndarray | None = None, epilogue: Any = None) -> None:
    """c = W @ b for float32 W packed by `packed(.., width=LANES)` (b and c 2-d with
    contiguous rows), with `bias` and an nchw16c_conv.Epilogue (its side of c's shape)
    applied over each thread's part of c once its tiles are stored, where given."""
    k_len, n_len = b.shape
    threads = numba.get_num_threads()
    tails = workspace("packed-columns", columns_scratch(k_len, n_len, threads), np.float32)
    launch(_gemm_columns, ap, b, c, m_len, panel_width(n_len), tails, threads,
           columns_split(m_len, n_len, threads),
           *tile_epilogue(m_len, bias, epilogue, conv_side(c, epilogue)))


def packed_conv_weights(w: np.ndarray, width: int = MR) -> np.ndarray:
    """A conv weight (O, C, kH, kW) packed as `packed` packs its (O, C*kH*kW) matrix."""
    return packed(w.reshape(w.shape[0], -1), width)


def _by_image(x: np.ndarray, w: np.ndarray, out: np.ndarray, attrs: dict[str, Any],
              width: int, product: Any, wp: np.ndarray | None) -> None:
    """out = conv2d(x, w) without bias, image by image: `product(panels, M, b, c, n)` of
    the weights packed `width` rows a panel (`wp`, or packed here) with image n itself
    (a 1x1 stride-1 conv) or its im2col columns, into c = image n of out."""
    n_len, o_len = x.shape[0], w.shape[0]
    k = w.shape[1] * w.shape[2] * w.shape[3]
    oh, ow = out.shape[2:]
    wp = packed_conv_weights(w, width) if wp is None else wp
    out3 = out.reshape(n_len, o_len, oh * ow)
    if is_pointwise(w.shape, attrs):
        for n in range(n_len):
            product(wp, o_len, x[n].reshape(k, oh * ow), out3[n], n)
        return
    (sh, sw), pads, (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    col = workspace("col", (k, oh * ow), x.dtype)
    for n in range(n_len):
        launch(conv_gemm._im2col, x, n, 1, 0, col, w.shape[2], w.shape[3], sh, sw, pads[0],
               pads[2], dh, dw, oh, ow)
        product(wp, o_len, col, out3[n], n)


def conv_scratch(x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                 out_hw: tuple[int, int], attrs: dict[str, Any], width: int
                 ) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The workspaces conv2d_packed (width MR) or conv2d_packed_channels (width LANES)
    take, by role: the im2col columns (but for a 1x1 stride-1 conv), then the product's
    (matmul_packed's tail and its tiles, or matmul_packed_channels's column panels)."""
    f32 = np.dtype(np.float32)
    k, p = w_shape[1] * w_shape[2] * w_shape[3], out_hw[0] * out_hw[1]
    scratch = {} if is_pointwise(w_shape, attrs) else {"col": ((k, p), f32)}
    if width == MR:
        scratch["packed-tail"] = ((k, LANES), f32)
        scratch["packed-tail-tiles"] = ((-(-w_shape[0] // MR), MR * LANES), f32)
    else:
        scratch["packed-columns"] = (columns_scratch(k, p, numba.get_num_threads()), f32)
    return scratch


def conv2d_packed_channels(x: np.ndarray, w: np.ndarray, out: np.ndarray,
                           attrs: dict[str, Any], wp: np.ndarray | None = None,
                           bias: np.ndarray | None = None, epilogue: Any = None) -> None:
    """out = conv2d(x, w) (float32, one group), output channels in the lanes, without
    bias, or with `bias` and a fused group's `epilogue` (matmul_packed_channels: over each
    thread's part of the output once its tiles are stored); `wp`:
    packed_conv_weights(w, LANES) made already."""
    _by_image(x, w, out, attrs, LANES, _per_image(out, bias, epilogue, matmul_packed_channels),
              wp)


def conv2d_packed(x: np.ndarray, w: np.ndarray, out: np.ndarray, attrs: dict[str, Any],
                  wp: np.ndarray | None = None, bias: np.ndarray | None = None,
                  epilogue: Any = None) -> None:
    """out = conv2d(x, w) (float32, one group), pixels in the lanes, without bias, or with
    `bias` and a fused group's `epilogue` (an nchw16c_conv.Epilogue, its side of out's
    shape) applied as each tile is stored; `wp`: packed_conv_weights(w) made already."""
    _by_image(x, w, out, attrs, MR, _per_image(out, bias, epilogue, matmul_packed), wp)


def _per_image(out: np.ndarray, bias: np.ndarray | None, epilogue: Any,
               matmul: Callable[..., None]) -> Callable[..., None]:
    """_by_image's product for image n: matmul(panels, M, b, c, bias, the epilogue with
    image n's side)."""
    n_len, o_len = out.shape[:2]
    side3 = None
    if epilogue is not None and epilogue.side is not None:
        side3 = np.ascontiguousarray(epilogue.side).reshape(n_len, o_len, -1)

    def product(panels: np.ndarray, m: int, b: np.ndarray, c: np.ndarray, n: int) -> None:
        form = epilogue if side3 is None else epilogue._replace(side=side3[n])
        matmul(panels, m, b, c, bias, form)
    return product

