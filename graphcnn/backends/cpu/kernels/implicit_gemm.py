"""A float32 convolution as an implicit GEMM on packed_gemm's microkernel: no im2col.

im2col writes every input value kh * kw times into a (K, pixels) matrix that the GEMM then
reads back (ResNet's stem: 7.4 MB, from a 0.6 MB image). Here the image is copied once,
zero-padded and split into its stride phases (depthwise.fill_phases' layout: per channel,
[column phase][row phase][row][column], rows phase_len long), where tap k = (c, i, j) of
output pixel (oy, ox) sits at offset[k] + oy * phase_len + ox, so 16 neighbouring outputs
of one row read 16 neighbouring values for every tap, at any stride or dilation. The
microkernel is packed_gemm's tile of 6 output channels by 16 pixels of up to four output
rows, with b's row k found through that offset table instead of a row stride (the next
output row is phase_len further); the padded image (the stem's: 0.6 MB) stays in the
core's cache while all the weight panels pass over each block.

A block at the end of an output row reads past the row (values it throws away); the phase
buffer has a vector of slack after it for the last one.
"""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types, uint64
from numba.extending import intrinsic

from graphcnn.backends.cpu.kernels import depthwise, packed_gemm, packed_images
from graphcnn.backends.cpu.kernels.conv_gemm import workspace
from graphcnn.backends.cpu.kernels.packed_gemm import MR, conv_side, epilogue, tile_epilogue
from graphcnn.backends.cpu.kernels.vector_ir import (
    F32,
    I64,
    LANES,
    emit_fma_loop,
    emit_tile_stores,
    i64,
    load_vector,
)
from graphcnn.backends.cpu.registry import JIT, TASK_JIT, launch


def _tile_gather_of(vectors: int) -> Any:
    @intrinsic
    def tile_gather(typingctx, w_addr, b_addr, off_addr, row_step, c_addr, ldc, out_row,
                    k_len, rows, bias_addr, side_addr, mode, low, high):
        """c[r * ldc + v * out_row + q] = sum_k w[k * MR + r] * b[off[k] + v * row_step + q]
        for q < 16, v < vectors (output rows) and r < rows, with w the (K, MR) panel of
        packed weights and off the taps' offsets; k_len >= 1; then, by `mode`, bias[r]
        added and the epilogue applied before the store, as packed_tiles' pixel tile does
        (side read at c's offsets, only where mode adds it)."""
        sig = types.void(types.uintp, types.uintp, types.uintp, types.int64, types.uintp,
                         types.int64, types.int64, types.int64, types.int64, types.uintp,
                         types.uintp, types.int64, types.float32, types.float32)

        def codegen(context, builder, signature, args):
            (w_int, b_int, off_int, row_step, c_int, ldc, out_row, k, rows, bias_int, side_int,
             mode, low, high) = args
            w, b, c, bias, side = (builder.inttoptr(v, F32.as_pointer())
                                   for v in (w_int, b_int, c_int, bias_int, side_int))
            off = builder.inttoptr(off_int, I64.as_pointer())
            at: dict[int, ir.Value] = {}

            def vector_at(kk: ir.Value, v: int = 0) -> ir.Value:
                if v == 0:  # one offset load per k, shared by the rows
                    at[0] = builder.load(builder.gep(off, [kk]), align=8)
                return load_vector(builder, b, builder.add(at[0], builder.mul(row_step,
                                                                              i64(v))))
            sums = emit_fma_loop(
                builder, k, vector_at,
                lambda kk, r: builder.load(builder.gep(
                    w, [builder.add(builder.mul(kk, i64(MR)), i64(r))]), align=4),
                MR, vectors)
            emit_tile_stores(builder, sums, MR, vectors, rows, lambda r, v: builder.add(
                builder.mul(i64(r), ldc), builder.mul(out_row, i64(v))), bias, side, c, mode,
                low, high)
            return context.get_dummy_value()

        return sig, codegen

    return tile_gather


# A tile is one to four output rows of 16 pixels: one row gives the FMA units six chains of
# multiply-adds, which wait on their latency; four give 24 (as packed_gemm's pixel tiles).
_tile_1, _tile_2, _tile_3, _tile_4 = (_tile_gather_of(v) for v in (1, 2, 3, 4))
ROWS_PER_TILE = 4


@numba.njit(inline="always")
def _tile_gather(vectors, w_at, b_at, off_at, row_step, c_at, ldc, out_row, k_len, rows,
                 bias_at, side_at, mode, low, high):
    """_tile_gather_of(vectors) for a run-time count, 1 to ROWS_PER_TILE."""
    if vectors == 4:
        _tile_4(w_at, b_at, off_at, row_step, c_at, ldc, out_row, k_len, rows, bias_at,
                side_at, mode, low, high)
    elif vectors == 3:
        _tile_3(w_at, b_at, off_at, row_step, c_at, ldc, out_row, k_len, rows, bias_at,
                side_at, mode, low, high)
    elif vectors == 2:
        _tile_2(w_at, b_at, off_at, row_step, c_at, ldc, out_row, k_len, rows, bias_at,
                side_at, mode, low, high)
    else:
        _tile_1(w_at, b_at, off_at, row_step, c_at, ldc, out_row, k_len, rows, bias_at,
                side_at, mode, low, high)


def phase_geometry(oh_len: int, ow_len: int, kh: int, kw: int, sh: int, sw: int, dh: int,
                   dw: int) -> tuple[int, int, int]:
    """(rows per row phase, columns per column phase, values per channel) of the padded
    image split into stride phases: the outputs' windows, and no more."""
    ph, pw = (oh_len - 1) * sh + (kh - 1) * dh + 1, (ow_len - 1) * sw + (kw - 1) * dw + 1
    rows, phase_len = (ph + sh - 1) // sh, (pw + sw - 1) // sw
    return rows, phase_len, sh * sw * rows * phase_len


_phase_geometry = numba.njit(inline="always")(phase_geometry)  # the kernel's copy


@numba.njit(**TASK_JIT)
def _tap_offsets(off, c_len, kh, kw, sh, sw, dh, dw, rows, phase_len, plane):
    """off[(c * kh + i) * kw + j]: where tap (i, j) of channel c reads for output (0, 0)."""
    for c in range(c_len):
        for i in range(kh):
            for j in range(kw):
                y, x = i * dh, j * dw
                off[(c * kh + i) * kw + j] = (c * plane + ((x % sw * sh + y % sh) * rows
                                                           + y // sh) * phase_len + x // sw)


@numba.njit(**TASK_JIT)
def _block(block, per_row, groups, phases, phase_len, wp, ob0, ob1, off, out, n, o_len,
           oh_len, ow_len, ldc, tile, bias, side, mode, low, high):
    """Weight panels ob0 to ob1 over one block: 16 pixels of one to four output rows (the
    rows split into `groups` groups as evenly as they go), with bias and the epilogue
    (`side`: out's shape, or out itself) applied as each tile is stored."""
    k_len = wp.shape[1]
    group, ox = block // per_row, block % per_row * LANES
    oy = group * oh_len // groups
    height = (group + 1) * oh_len // groups - oy
    b_at = phases.ctypes.data + (oy * phase_len + ox) * 4
    cols = min(LANES, ow_len - ox)
    for ob in range(ob0, ob1):
        rows_here = min(MR, o_len - ob * MR)
        w_at = wp.ctypes.data + ob * k_len * MR * 4
        at = (n * o_len * ldc + ob * MR * ldc + oy * ow_len + ox) * 4
        bias_at = bias.ctypes.data + ob * MR * 4
        if cols == LANES:
            _tile_gather(height, w_at, b_at, off.ctypes.data, phase_len, out.ctypes.data + at,
                         ldc, ow_len, k_len, rows_here, bias_at, side.ctypes.data + at, mode,
                         low, high)
        else:  # into the scratch tile, (MR, height, 16), then the valid columns to out
            _tile_gather(height, w_at, b_at, off.ctypes.data, phase_len, tile.ctypes.data,
                         ROWS_PER_TILE * LANES, LANES, k_len, rows_here, bias_at,
                         tile.ctypes.data, 0, low, high)
            for r in range(rows_here):
                m = ob * MR + r
                for v in range(height):
                    for q in range(cols):
                        out[n, m, oy + v, ox + q] = epilogue(
                            tile[uint64((r * ROWS_PER_TILE + v) * LANES + q)], bias[m],
                            side[n, m, oy + v, ox + q], mode, low, high)


@numba.njit(**JIT)
def _implicit_gemm(x, wp, out, kh, kw, sh, sw, pt, pl, dh, dw, phases, off, runs, by_images,
                   bias, side, mode, low, high):
    """out = conv2d(x, W) for W packed by packed_gemm.packed, with bias and the epilogue
    (packed_gemm.tile_epilogue's) applied as each tile is stored.

    With `by_images` (packed_images.splits_images), the `runs` threads split the images:
    thread t splits its own images into phases in its row of `phases` and runs all their
    blocks with all the weight panels, so the threads meet once per call and no thread
    reads phases the other core wrote. Else image by image: the image split into phases
    (one task per channel) in phases[0], then the blocks (16 pixels of up to four output
    rows) in `runs` runs (a few per thread, each with its scratch tile: none is allocated
    per block), all the weight panels over each block, or a share of them where the
    blocks are fewer than the runs."""
    n_len, c_len, in_h, in_w = x.shape
    o_len, oh_len, ow_len = out.shape[1], out.shape[2], out.shape[3]
    rows, phase_len, plane = _phase_geometry(oh_len, ow_len, kh, kw, sh, sw, dh, dw)
    _tap_offsets(off, c_len, kh, kw, sh, sw, dh, dw, rows, phase_len, plane)
    xf = x.reshape(x.size)
    ldc = oh_len * ow_len
    per_row = (ow_len + LANES - 1) // LANES
    groups = (oh_len + ROWS_PER_TILE - 1) // ROWS_PER_TILE
    blocks = groups * per_row
    none = n_len - n_len
    if by_images:
        for t in prange(runs):
            own = phases[t]
            tile = np.empty(MR * ROWS_PER_TILE * LANES, np.float32)
            for n in range(t * n_len // runs, (t + 1) * n_len // runs):
                for c in range(c_len):
                    depthwise.fill_phases(xf, (n * c_len + c) * in_h * in_w, in_h, in_w, pt,
                                          pl, sh, sw, rows, phase_len,
                                          own[c * plane:(c + 1) * plane],
                                          n == t * n_len // runs)
                for block in range(blocks):
                    # all the panels: from `none`, not a literal 0, which would compile
                    # _block a second time for a constant first panel
                    _block(block, per_row, groups, own, phase_len, wp, none, wp.shape[0], off,
                           out, n, o_len, oh_len, ow_len, ldc, tile, bias, side, mode, low,
                           high)
        return
    one = phases[0]
    for n in range(n_len):
        for c in prange(c_len):
            depthwise.fill_phases(xf, (n * c_len + c) * in_h * in_w, in_h, in_w, pt, pl, sh,
                                  sw, rows, phase_len, one[c * plane:(c + 1) * plane], n == 0)
        # a few runs per thread; where the blocks are fewer (7x7 or 14x14 planes), the
        # weight panels are split too, so that no thread waits on another's extra block
        shares = min(wp.shape[0], (runs + blocks - 1) // blocks)
        parts = min(blocks, runs)
        for task in prange(parts * shares):
            part, share = task // shares, task % shares
            ob0 = share * wp.shape[0] // shares
            ob1 = (share + 1) * wp.shape[0] // shares
            tile = np.empty(MR * ROWS_PER_TILE * LANES, np.float32)
            for block in range(part * blocks // parts, (part + 1) * blocks // parts):
                _block(block, per_row, groups, one, phase_len, wp, ob0, ob1, off, out, n,
                       o_len, oh_len, ow_len, ldc, tile, bias, side, mode, low, high)


def implicit_scratch(w_shape: tuple[int, ...], out_hw: tuple[int, int],
                     attrs: dict[str, Any], n_len: int = 1
                     ) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The workspaces conv2d_implicit_gemm takes for n_len images (the most it is built
    for), by role (in the order it takes them): the image's phases and a vector of zeros
    past them (one row per thread where the batch is split over the threads), the taps'
    offsets."""
    c_len, kh, kw = w_shape[1:]
    (sh, sw), (dh, dw) = attrs["stride"], attrs["dilation"]
    plane = phase_geometry(out_hw[0], out_hw[1], kh, kw, sh, sw, dh, dw)[2]
    threads = numba.get_num_threads()
    rows = threads if packed_images.splits_images(n_len, threads) else 1
    return {"implicit-phases": ((rows, c_len * plane + LANES), np.dtype(np.float32)),
            "implicit-offsets": ((c_len * kh * kw,), np.dtype(np.int64))}


def conv2d_implicit_gemm(x: np.ndarray, w: np.ndarray, out: np.ndarray,
                         attrs: dict[str, Any], wp: np.ndarray | None = None,
                         bias: np.ndarray | None = None, epilogue: Any = None) -> None:
    """out = conv2d(x, w) (float32, one group), without bias, or with `bias` and a fused
    group's `epilogue` (an nchw16c_conv.Epilogue, its side of out's shape) applied as each
    tile is stored; `wp`: packed_gemm.packed_conv_weights(w) made already."""
    o_len, c_len, kh, kw = w.shape
    (sh, sw), pads, (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    phases, off = (workspace(role, *spec) for role, spec in
                   implicit_scratch(w.shape, out.shape[2:], attrs, x.shape[0]).items())
    phases[:, -LANES:] = 0  # read (and thrown away) by a row's last block
    wp = packed_gemm.packed_conv_weights(w) if wp is None else wp
    threads = numba.get_num_threads()
    by_images = phases.shape[0] > 1   # one row of phases per thread: the batch is split
    side = conv_side(out, epilogue)
    launch(_implicit_gemm, x, wp, out, kh, kw, sh, sw, pads[0], pads[2], dh, dw, phases, off,
           threads if by_images else 4 * threads, by_images,
           *tile_epilogue(o_len, bias, epilogue, side))
