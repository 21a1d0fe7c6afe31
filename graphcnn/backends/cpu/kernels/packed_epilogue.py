"""The packed GEMMs' convolutions (packed_gemm.py) with the bias and a fused group's
epilogue (the residual add, then relu or clip: nchw16c_conv.emit_epilogue's forms) applied
as each tile is stored, not in passes over the output after it.

Why: ResNet's 1x1 convolutions are fused with their bias and relu, or with the residual
add and relu. Run as a GEMM into the output and then the generated epilogue, each writes
the output, reads it back, reads the residual and writes the output again: for
ResNet-50's 64->256 at 56x56 that is three passes over 3.2 MB beside a GEMM that reads
0.8 MB of image. Here the block of six output channels by 16 pixels (or 16 channels by
six or seven pixels) gets its bias, its residual and its relu while it is still in
registers (or in the tile the channels-in-lanes kernel copies out anyway).

The formulas and their order are those of the generated epilogue (the conv's sum, + bias,
+ the side input, then clip or relu), so the results are equal to it bit for bit.
"""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types, uint64
from numba.extending import intrinsic

from graphcnn.backends.cpu.kernels import conv_gemm
from graphcnn.backends.cpu.kernels.conv_gemm import workspace
from graphcnn.backends.cpu.kernels.nchw16c_conv import (
    ADD_SIDE,
    CLIP,
    NO_EPILOGUE,
    RELU,
    Epilogue,
    emit_epilogue,
)
from graphcnn.backends.cpu.kernels.packed_gemm import (
    LANES,
    MR,
    NR,
    NR_WIDE,
    emit_fma_loop,
    load_vector,
    pack_columns,
    packed_conv_weights,
    panel_width,
    store_vector,
    tile_channels,
    tile_channels_wide,
)
from graphcnn.backends.cpu.registry import JIT, launch
from graphcnn.ops.conv_shapes import is_pointwise

# A mode bit beyond nchw16c_conv's (ADD_SIDE, CLIP, RELU): add the bias first.
BIAS = 8

_F32, _I64, _I32 = ir.FloatType(), ir.IntType(64), ir.IntType(32)


def _i64(value: int) -> ir.Constant:
    return ir.Constant(_I64, value)


@intrinsic
def _tile_stored(typingctx, w_addr, b_addr, ldb, c_addr, ldc, k_len, rows, bias_addr,
                 side_addr, lds, mode, low, high):
    """packed_gemm._tile (c[r * ldc + q] = sum_k w[k * MR + r] * b[k * ldb + q], q < 16,
    r < rows) with, per row, + bias[r] if mode has BIAS, then emit_epilogue's side add
    (side[r * lds + q]) and clip or relu. bias and side are read for every row stored, so
    they must point at readable memory (bias at rows values) even where mode skips them."""
    sig = types.void(types.uintp, types.uintp, types.int64, types.uintp, types.int64,
                     types.int64, types.int64, types.uintp, types.uintp, types.int64,
                     types.int64, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        w_int, b_int, ldb, c_int, ldc, k, rows, bias_int, side_int, lds, mode, low, high = args
        w, b, c, bias, side = (builder.inttoptr(v, _F32.as_pointer())
                               for v in (w_int, b_int, c_int, bias_int, side_int))
        sums = emit_fma_loop(
            builder, k, lambda kk: load_vector(builder, b, builder.mul(kk, ldb)),
            lambda kk, r: builder.load(builder.gep(
                w, [builder.add(builder.mul(kk, _i64(MR)), _i64(r))]), align=4), MR)
        vec = sums[0].type
        undef = ir.Constant(vec, ir.Undefined)
        broadcast = ir.Constant(ir.VectorType(_I32, LANES), [ir.Constant(_I32, 0)] * LANES)
        with_bias = builder.icmp_signed("!=", builder.and_(mode, _i64(BIAS)), _i64(0))
        for r in range(MR):
            with builder.if_then(builder.icmp_signed("<", _i64(r), rows)):
                one = builder.insert_element(undef, builder.load(builder.gep(bias, [_i64(r)]),
                                                                 align=4),
                                             ir.Constant(_I32, 0))
                value = builder.select(with_bias, builder.fadd(sums[r], builder.shuffle_vector(
                    one, undef, broadcast)), sums[r])
                value = emit_epilogue(builder, value, side, builder.mul(_i64(r), lds), mode,
                                      low, high)
                store_vector(builder, value, c, builder.mul(_i64(r), ldc))
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(inline="always")
def _finish(value, bias, side, mode, low, high):
    """The epilogue on one scalar, as _tile_stored applies it to a vector."""
    if mode & BIAS:
        value = value + bias
    if mode & ADD_SIDE:
        value = value + side
    if mode & CLIP:
        value = low if value < low else (high if value > high else value)
    if mode & RELU:
        value = np.float32(0.0) if value <= np.float32(0.0) else value
    return value


@numba.njit(**JIT)
def _gemm_stored(wp, b, c, m_len, tail, blocks_out, bias, side, mode, low, high):
    """packed_gemm._gemm (c = W @ b, column block by column block, all the weight panels
    over each) with the epilogue applied as the tiles are stored; side: c's shape (read
    only with ADD_SIDE, but always a readable array), bias: M values (or a readable
    array of M)."""
    ob_len, k_len = wp.shape[0], wp.shape[1]
    n_len = b.shape[1]
    ldb, ldc, lds = b.strides[0] // 4, c.strides[0] // 4, side.strides[0] // 4
    tile_values = blocks_out.reshape(blocks_out.size)
    full = n_len // LANES
    blocks = full + (1 if n_len % LANES else 0)
    if n_len % LANES:
        for k in range(k_len):
            for q in range(LANES):
                n = full * LANES + q
                tail[k, q] = b[k, n] if n < n_len else 0
    for task in prange(ob_len * blocks):
        nb, ob = task // ob_len, task % ob_len
        rows = min(MR, m_len - ob * MR)
        w_at = wp.ctypes.data + ob * k_len * MR * 4
        if nb < full:
            _tile_stored(w_at, b.ctypes.data + nb * LANES * 4, ldb,
                         c.ctypes.data + (ob * MR * ldc + nb * LANES) * 4, ldc, k_len, rows,
                         bias.ctypes.data + ob * MR * 4,
                         side.ctypes.data + (ob * MR * lds + nb * LANES) * 4, lds, mode, low,
                         high)
        else:
            at = ob * MR * LANES  # this panel's tile in blocks_out (no view per task)
            _tile_stored(w_at, tail.ctypes.data, LANES, blocks_out.ctypes.data + at * 4,
                         LANES, k_len, rows, bias.ctypes.data, side.ctypes.data, 0, 0, low,
                         high)  # the epilogue below, as the tile is copied to c
            for r in range(rows):
                m = ob * MR + r
                for q in range(n_len - full * LANES):
                    n = full * LANES + q
                    c[m, n] = _finish(tile_values[uint64(at + r * LANES + q)], bias[m],
                                      side[m, n], mode, low, high)


@numba.njit(**JIT)
def _gemm_channels_stored(ap, bp, c, m_len, bias, side, mode, low, high):
    """packed_gemm._gemm_channels (one task per panel of 16 output channels) with the
    epilogue applied as each tile is copied out to c."""
    mb_len, k_len = ap.shape[0], ap.shape[1]
    nb_len, nr, n_len = bp.shape[0], bp.shape[2], c.shape[1]
    for mb in prange(mb_len):
        tile = np.empty(LANES * NR_WIDE, np.float32)
        rows = min(LANES, m_len - mb * LANES)
        for nb in range(nb_len):
            a_at = ap.ctypes.data + mb * k_len * LANES * 4
            b_at = bp.ctypes.data + nb * k_len * nr * 4
            if nr == NR_WIDE:
                tile_channels_wide(a_at, b_at, NR_WIDE, tile.ctypes.data, k_len)
            else:
                tile_channels(a_at, b_at, NR, tile.ctypes.data, k_len)
            for j in range(min(nr, n_len - nb * nr)):
                n = nb * nr + j
                for l in range(rows):
                    m = mb * LANES + l
                    c[m, n] = _finish(tile[uint64(j * LANES + l)], bias[m], side[m, n], mode,
                                      low, high)


def _product(wp: np.ndarray, m_len: int, b: np.ndarray, c: np.ndarray, bias: np.ndarray,
             side: np.ndarray, mode: int, low: np.float32, high: np.float32) -> None:
    """c = epilogue(W @ b) for W packed MR rows a panel (packed_gemm.packed)."""
    k_len = wp.shape[1]
    tail = workspace("packed-tail", (k_len, LANES), np.float32)
    blocks_out = workspace("packed-tail-tiles", (wp.shape[0], MR * LANES), np.float32)
    launch(_gemm_stored, wp, b, c, m_len, tail, blocks_out, bias, side, mode, low, high)


def _product_channels(ap: np.ndarray, m_len: int, b: np.ndarray, c: np.ndarray,
                      bias: np.ndarray, side: np.ndarray, mode: int, low: np.float32,
                      high: np.float32) -> None:
    """c = epilogue(W @ b) for W packed LANES rows a panel; b's columns packed here."""
    k_len, n_len = b.shape
    nr = panel_width(n_len)
    bp = workspace("packed-columns", (-(-n_len // nr), k_len, nr), np.float32)
    launch(pack_columns, b, bp)
    launch(_gemm_channels_stored, ap, bp, c, m_len, bias, side, mode, low, high)


def conv2d_packed_stored(x: np.ndarray, w: np.ndarray, out: np.ndarray,
                         attrs: dict[str, Any], wp: np.ndarray | None,
                         bias: np.ndarray | None, epilogue: Epilogue = NO_EPILOGUE,
                         width: int = MR) -> None:
    """out = epilogue(conv2d(x, w) + bias) (float32, one group; bias None: none), image by
    image, on the packed GEMM with pixels in the lanes (width MR) or output channels in
    them (width LANES); `wp`: packed_conv_weights(w, width) made already (None: packed
    here). The workspaces are packed_gemm.conv_scratch's."""
    n_len, o_len = x.shape[0], w.shape[0]
    k = w.shape[1] * w.shape[2] * w.shape[3]
    oh, ow = out.shape[2:]
    wp = packed_conv_weights(w, width) if wp is None else wp
    product = _product if width == MR else _product_channels
    side, mode, low, high = epilogue.args(out)
    mode |= 0 if bias is None else BIAS
    # read where mode skips them (see _tile_stored): any readable arrays of the sizes
    bias_values = np.zeros(o_len, np.float32) if bias is None else bias
    out3 = out.reshape(n_len, o_len, oh * ow)
    side3 = side.reshape(n_len, o_len, oh * ow)
    if is_pointwise(w.shape, attrs):
        for n in range(n_len):
            product(wp, o_len, x[n].reshape(k, oh * ow), out3[n], bias_values, side3[n], mode,
                    low, high)
        return
    (sh, sw), pads, (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    col = workspace("col", (k, oh * ow), x.dtype)
    for n in range(n_len):
        launch(conv_gemm._im2col, x, n, 1, 0, col, w.shape[2], w.shape[3], sh, sw, pads[0],
               pads[2], dh, dw, oh, ow)
        product(wp, o_len, col, out3[n], bias_values, side3[n], mode, low, high)

