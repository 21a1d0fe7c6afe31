"""A float32 convolution as an implicit GEMM on packed_gemm's microkernel: no im2col.

im2col writes every input value kh * kw times into a (K, pixels) matrix that the GEMM then
reads back (ResNet's stem: 7.4 MB, from a 0.6 MB image). Here the image is copied once,
zero-padded and split into its stride phases (depthwise.fill_phases' layout: per channel,
[column phase][row phase][row][column], rows phase_len long), where tap k = (c, i, j) of
output pixel (oy, ox) sits at offset[k] + oy * phase_len + ox, so 16 neighbouring outputs
of one row read 16 neighbouring values for every tap, at any stride or dilation. The
microkernel is packed_gemm's 6-output-channel x 16-pixel tile with b's row k found through
that offset table instead of a row stride; the padded image (the stem's: 0.6 MB) stays in
the core's cache while all the weight panels pass over each block of 16 pixels.

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

from graphcnn.backends.cpu.kernels import depthwise, packed_gemm
from graphcnn.backends.cpu.kernels.conv_gemm import workspace
from graphcnn.backends.cpu.kernels.packed_gemm import (
    LANES,
    MR,
    emit_fma_loop,
    load_vector,
    store_vector,
)
from graphcnn.backends.cpu.registry import JIT, TASK_JIT, launch

_F32, _I64 = ir.FloatType(), ir.IntType(64)


def _i64(value: int) -> ir.Constant:
    return ir.Constant(_I64, value)


@intrinsic
def _tile_gather(typingctx, w_addr, b_addr, off_addr, c_addr, ldc, k_len, rows):
    """c[r * ldc + q] = sum_k w[k * MR + r] * b[off[k] + q] for q < 16 and r < rows, with
    w the (K, MR) panel of packed weights and off the taps' offsets; k_len >= 1."""
    sig = types.void(types.uintp, types.uintp, types.uintp, types.uintp, types.int64,
                     types.int64, types.int64)

    def codegen(context, builder, signature, args):
        w_int, b_int, off_int, c_int, ldc, k, rows = args
        w, b, c = (builder.inttoptr(v, _F32.as_pointer()) for v in (w_int, b_int, c_int))
        off = builder.inttoptr(off_int, _I64.as_pointer())
        sums = emit_fma_loop(
            builder, k,
            lambda kk: load_vector(builder, b, builder.load(builder.gep(off, [kk]), align=8)),
            lambda kk, r: builder.load(builder.gep(
                w, [builder.add(builder.mul(kk, _i64(MR)), _i64(r))]),
                align=4), MR)
        for r in range(MR):
            with builder.if_then(builder.icmp_signed("<", _i64(r), rows)):
                store_vector(builder, sums[r], c, builder.mul(_i64(r), ldc))
        return context.get_dummy_value()

    return sig, codegen


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
def _block(block, per_row, phases, phase_len, wp, off, out, out_n, n, o_len, ow_len, ldc,
           tile):
    """All the weight panels over one block of 16 pixels of an output row."""
    ob_len, k_len = wp.shape[0], wp.shape[1]
    oy, ox = block // per_row, block % per_row * LANES
    b_at = phases.ctypes.data + (oy * phase_len + ox) * 4
    cols = min(LANES, ow_len - ox)
    for ob in range(ob_len):
        rows_here = min(MR, o_len - ob * MR)
        w_at = wp.ctypes.data + ob * k_len * MR * 4
        c_at = out_n + (ob * MR * ldc + oy * ow_len + ox) * 4
        if cols == LANES:
            _tile_gather(w_at, b_at, off.ctypes.data, c_at, ldc, k_len, rows_here)
        else:
            _tile_gather(w_at, b_at, off.ctypes.data, tile.ctypes.data, LANES, k_len,
                         rows_here)
            for r in range(rows_here):
                for q in range(cols):
                    out[n, ob * MR + r, oy, ox + q] = tile[uint64(r * LANES + q)]


@numba.njit(**JIT)
def _implicit_gemm(x, wp, out, kh, kw, sh, sw, pt, pl, dh, dw, phases, off, runs):
    """out = conv2d(x, W) for W packed by packed_gemm.packed, image by image: the image
    split into phases (one task per channel), then the blocks of 16 pixels of the output
    rows in `runs` runs (a few per thread, each with its scratch tile: none is allocated
    per block), all the weight panels over each block."""
    n_len, c_len, in_h, in_w = x.shape
    o_len, oh_len, ow_len = out.shape[1], out.shape[2], out.shape[3]
    rows, phase_len, plane = _phase_geometry(oh_len, ow_len, kh, kw, sh, sw, dh, dw)
    _tap_offsets(off, c_len, kh, kw, sh, sw, dh, dw, rows, phase_len, plane)
    xf = x.reshape(x.size)
    ldc = oh_len * ow_len
    per_row = (ow_len + LANES - 1) // LANES
    for n in range(n_len):
        for c in prange(c_len):
            depthwise.fill_phases(xf, (n * c_len + c) * in_h * in_w, in_h, in_w, pt, pl, sh,
                                  sw, rows, phase_len, phases[c * plane:(c + 1) * plane])
        out_n = out.ctypes.data + n * o_len * ldc * 4
        blocks = oh_len * per_row
        parts = min(blocks, runs)
        for part in prange(parts):
            tile = np.empty(MR * LANES, np.float32)
            for block in range(part * blocks // parts, (part + 1) * blocks // parts):
                _block(block, per_row, phases, phase_len, wp, off, out, out_n, n, o_len,
                       ow_len, ldc, tile)


def implicit_scratch(w_shape: tuple[int, ...], out_hw: tuple[int, int],
                     attrs: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The workspaces conv2d_implicit_gemm takes, by role (in the order it takes them):
    the image's phases (and a vector of zeros past them), the taps' offsets."""
    c_len, kh, kw = w_shape[1:]
    (sh, sw), (dh, dw) = attrs["stride"], attrs["dilation"]
    plane = phase_geometry(out_hw[0], out_hw[1], kh, kw, sh, sw, dh, dw)[2]
    return {"implicit-phases": ((c_len * plane + LANES,), np.dtype(np.float32)),
            "implicit-offsets": ((c_len * kh * kw,), np.dtype(np.int64))}


def conv2d_implicit_gemm(x: np.ndarray, w: np.ndarray, out: np.ndarray,
                         attrs: dict[str, Any], wp: np.ndarray | None = None) -> None:
    """out = conv2d(x, w) without bias (float32, one group); `wp`:
    packed_gemm.packed_conv_weights(w) made already."""
    o_len, c_len, kh, kw = w.shape
    (sh, sw), pads, (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    phases, off = (workspace(role, *spec) for role, spec in
                   implicit_scratch(w.shape, out.shape[2:], attrs).items())
    phases[-LANES:] = 0  # read (and thrown away) by a row's last block
    wp = packed_gemm.packed_conv_weights(w) if wp is None else wp
    launch(_implicit_gemm, x, wp, out, kh, kw, sh, sw, pads[0], pads[2], dh, dw, phases, off,
           4 * numba.get_num_threads())
