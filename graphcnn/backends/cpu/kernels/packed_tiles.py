"""The two register-blocked microkernels of the packed GEMMs (packed_gemm.py), emitted as
LLVM vector code (see vector_ir.py for why): pixels in the lanes, a tile of MR = 6 output
channels by one to four vectors of 16 pixels (`_tile_of`); and output channels in the
lanes, a tile of one to three panels of 16 channels by NR or NR_WIDE pixels
(`_tile_channels_of`). packed_gemm.py holds the loops that run them over a product.
"""
from __future__ import annotations

from typing import Any

import numba
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from graphcnn.backends.cpu.kernels.vector_ir import (
    ADD_SIDE,
    F32,
    LANES,
    emit_fma_loop,
    emit_prefetch,
    emit_tile_stores,
    i64,
    load_vector,
    store_vector,
)

MR = 6       # output channels per block: six accumulators (and one load) per k


def _tile_of(vectors: int) -> Any:
    @intrinsic
    def tile(typingctx, w_addr, b_addr, ldb, c_addr, ldc, k_len, rows, bias_addr, side_addr,
             mode, low, high):
        """c[r * ldc + q] = sum_k w[k * MR + r] * b[k * ldb + q] for q < 16 * vectors and
        r < rows, with w the (K, MR) panel of packed weights; k_len >= 1; then, by `mode`,
        bias[r] added (ADD_BIAS) and the epilogue (emit_epilogue: side read at c's
        offsets, only where mode adds it) applied before the store. bias must be readable
        for r < rows even when its bit is off."""
        sig = types.void(types.uintp, types.uintp, types.int64, types.uintp, types.int64,
                         types.int64, types.int64, types.uintp, types.uintp, types.int64,
                         types.float32, types.float32)

        def codegen(context, builder, signature, args):
            w_int, b_int, ldb, c_int, ldc, k, rows, bias_int, side_int, mode, low, high = args
            w, b, c, bias, side = (builder.inttoptr(v, F32.as_pointer())
                                   for v in (w_int, b_int, c_int, bias_int, side_int))
            ends = [builder.add(builder.mul(i64(r), ldc), i64(v * LANES))
                    for r in range(MR) for v in range(vectors)]
            for at in ends:   # see PREFETCH_AHEAD
                emit_prefetch(builder, c, at, write=True)
            with builder.if_then(builder.icmp_signed(
                    "!=", builder.and_(mode, i64(ADD_SIDE)), i64(0))):
                for at in ends:
                    emit_prefetch(builder, side, at, write=False)

            def prefetch_ahead(kk: ir.Value) -> None:
                row = builder.mul(builder.add(kk, i64(PREFETCH_AHEAD)), ldb)
                for v in range(vectors):
                    emit_prefetch(builder, b, builder.add(row, i64(v * LANES)), write=False)
            sums = emit_fma_loop(
                builder, k, lambda kk, v=0: load_vector(
                    builder, b, builder.add(builder.mul(kk, ldb), i64(v * LANES))),
                lambda kk, r: builder.load(builder.gep(
                    w, [builder.add(builder.mul(kk, i64(MR)), i64(r))]), align=4),
                MR, vectors, prefetch_ahead)
            emit_tile_stores(builder, sums, MR, vectors, rows, lambda r, v: builder.add(
                builder.mul(i64(r), ldc), i64(v * LANES)), bias, side, c, mode, low, high)
            return context.get_dummy_value()

        return sig, codegen

    return tile


# Rows of b lie a whole row of pixels apart (an image's 3136 floats at 56x56): farther than
# the hardware's stride prefetcher follows, so each k of a tile waited on its row of b from
# L2 or L3, and each store on a read of its output line (a tile's rows are as far apart).
# The tiles ask for row k + PREFETCH_AHEAD of b as they multiply row k, and for their
# output (and side) lines before they store. Both threads of a Xeon 8592, 16 images, one
# per thread, outputs cold, GFLOP/s (benchmarks/RESULTS.md, thirteenth session), M x K x N:
# pixels in the lanes 258 x 64 x 3136 114 -> 205, 66 x 256 x 3136 170 -> 239, 132 x 512 x
# 784 216 -> 276, 258 x 1024 x 196 264 -> 313; channels in the lanes 144 x 512 x 784
# 189 -> 287, 528 x 128 x 784 198 -> 263. 8 and 16 rows ahead did alike, 32 lost at 784.
PREFETCH_AHEAD = 16

# One vector of 16 pixels gives six independent chains of multiply-adds and seven loads per
# six of them: the FMA units wait on the chains' latency and on the loads. Four vectors (64
# pixels) give 24 chains and ten loads per 24: the multiply-adds set the pace (one core of a
# Xeon 8592: 93 GFLOP/s with one vector, 124 with two, 140 with three, 152 with four).
_tile = _tile_of(1)
_tile_2 = _tile_of(2)
_tile_3 = _tile_of(3)
_tile_4 = _tile_of(4)
WIDEST = 4   # vectors per tile


@numba.njit(inline="always")
def _tile_n(vectors, w_at, b_at, ldb, c_at, ldc, k_len, rows, bias_at, side_at, mode, low,
            high):
    """_tile_of(vectors) for a run-time count, 1 to WIDEST."""
    if vectors == 4:
        _tile_4(w_at, b_at, ldb, c_at, ldc, k_len, rows, bias_at, side_at, mode, low, high)
    elif vectors == 3:
        _tile_3(w_at, b_at, ldb, c_at, ldc, k_len, rows, bias_at, side_at, mode, low, high)
    elif vectors == 2:
        _tile_2(w_at, b_at, ldb, c_at, ldc, k_len, rows, bias_at, side_at, mode, low, high)
    else:
        _tile(w_at, b_at, ldb, c_at, ldc, k_len, rows, bias_at, side_at, mode, low, high)


# ---- output channels in the lanes ----------------------------------------------------
# A deep layer with few pixels (ResNet's 512@7 at batch 1: 49 of them) fills four 16-pixel
# vectors with 49 pixels; there the lanes hold 16 output channels instead and a tile is
# 16 channels by NR pixels, with the columns packed as (N/NR, K, NR) panels per call.
# Tiles are NR = 6 pixels wide, or 7 where that leaves fewer columns over: 49 pixels make
# seven panels of 7 and no wasted column, against nine of 6 with five.
NR = 6
NR_WIDE = 7


def _tile_channels_of(nr: int, panels: int = 1) -> Any:
    @intrinsic
    def tile_channels(typingctx, a_addr, b_addr, ldb, t_addr, k_len):
        """t[(j * panels + p) * 16 + l] = sum_k a[(p * K + k) * 16 + l] * b[k * ldb + j] for
        j < nr: `panels` neighbouring panels of 16 packed weight rows by nr columns of b (a
        packed panel, ldb = nr, or nr neighbouring columns of a row-major matrix, ldb its
        row length), into the scratch tile t (column j: 16 * panels rows); k_len >= 1."""
        sig = types.void(types.uintp, types.uintp, types.int64, types.uintp, types.int64)

        def codegen(context, builder, signature, args):
            a_int, b_int, ldb, t_int, k = args
            a, b, t = (builder.inttoptr(v, F32.as_pointer()) for v in (a_int, b_int, t_int))
            panel = builder.mul(k, i64(LANES))

            def prefetch_ahead(kk: ir.Value) -> None:   # see PREFETCH_AHEAD
                row = builder.mul(builder.add(kk, i64(PREFETCH_AHEAD)), ldb)
                emit_prefetch(builder, b, row, write=False)
                emit_prefetch(builder, b, builder.add(row, i64(nr - 1)), write=False)
            sums = emit_fma_loop(
                builder, k, lambda kk, p=0: load_vector(builder, a, builder.add(
                    builder.mul(kk, i64(LANES)), builder.mul(panel, i64(p)))),
                lambda kk, j: builder.load(builder.gep(
                    b, [builder.add(builder.mul(kk, ldb), i64(j))]), align=4), nr, panels,
                prefetch_ahead)
            for j in range(nr):
                for p in range(panels):
                    store_vector(builder, sums[p * nr + j], t, i64(LANES * (j * panels + p)))
            return context.get_dummy_value()

        return sig, codegen

    return tile_channels


tile_channels = _tile_channels_of(NR)
tile_channels_wide = _tile_channels_of(NR_WIDE)
# Two or three panels at once (32 or 48 output channels): up to 21 independent chains of
# multiply-adds and ten loads per 21, where one panel's six or seven chains wait on the FMA
# latency and the loads (one core of a Xeon 8592, 7 columns: 87 GFLOP/s with one panel,
# 146 with two, 155 with three; four spill registers).
_CHANNEL_TILES = tuple(_tile_channels_of(nr, panels) for nr in (NR, NR_WIDE)
                       for panels in (1, 2, 3))
_t6_1, _t6_2, _t6_3, _t7_1, _t7_2, _t7_3 = _CHANNEL_TILES


@numba.njit(inline="always")
def tile_channels_n(panels, nr, a_at, b_at, ldb, t_at, k_len):
    """_tile_channels_of(nr, panels) for run-time nr (NR or NR_WIDE) and panels (1-3)."""
    if nr == NR_WIDE:
        if panels == 3:
            _t7_3(a_at, b_at, ldb, t_at, k_len)
        elif panels == 2:
            _t7_2(a_at, b_at, ldb, t_at, k_len)
        else:
            _t7_1(a_at, b_at, ldb, t_at, k_len)
    elif panels == 3:
        _t6_3(a_at, b_at, ldb, t_at, k_len)
    elif panels == 2:
        _t6_2(a_at, b_at, ldb, t_at, k_len)
    else:
        _t6_1(a_at, b_at, ldb, t_at, k_len)
