"""The 1x1 convolution (stride 1, no padding, one group) in the blocked layout NCHW16c.

In NCHW16c a pixel's 16 channels of one block are one vector, so a tile of the output, 16
output channels by NR pixels, is NR whole vectors stored one after the other, and no
transpose is needed on either side: the microkernel keeps the tile in NR vector registers;
per input channel k it loads the 16 weights of the output block (a panel packed once, as
packed_gemm's `packed(.., width=16)`: (O/16, C, 16)) and broadcasts the input's value at
each of the NR pixels, which sit 16 floats apart in block k // 16. Only the real input
channels are read (the padding lanes of the input's last block never are), and the
output's padding lanes come out as zero weights and zero bias make them: zero.
"""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from graphcnn.backends.cpu.kernels.packed_gemm import (LANES, emit_fma_loop, load_vector,
                                                       packed, store_vector)
from graphcnn.backends.cpu.registry import JIT, launch

NR = 8  # pixels per tile: eight accumulators, one weight load and eight broadcasts per k

_F32, _I64 = ir.FloatType(), ir.IntType(64)


def _i64(value: int) -> ir.Constant:
    return ir.Constant(_I64, value)


@intrinsic
def _tile(typingctx, w_addr, x_addr, plane, k_len, bias_addr, out_addr, valid):
    """out[j * 16 + l] = bias[l] + sum_k w[k * 16 + l] * x[(k // 16) * plane + j * 16 + k % 16]
    for j < valid (<= NR): one output block by `valid` pixels; k_len >= 1. Pixels past
    `valid` read the last valid pixel again (in bounds) and are not stored."""
    sig = types.void(types.uintp, types.uintp, types.int64, types.int64, types.uintp,
                     types.uintp, types.int64)

    def codegen(context, builder, signature, args):
        w_int, x_int, plane, k, b_int, o_int, valid = args
        w, x, bias, out = (builder.inttoptr(v, _F32.as_pointer())
                           for v in (w_int, x_int, b_int, o_int))
        last = builder.sub(valid, _i64(1))
        offsets = []
        for j in range(NR):  # pixel j's offset, clamped to the last valid pixel
            jj = builder.select(builder.icmp_signed("<", _i64(j), valid), _i64(j), last)
            offsets.append(builder.mul(jj, _i64(LANES)))

        def channel_at(kk: ir.Value) -> ir.Value:
            block = builder.lshr(kk, _i64(4))
            return builder.add(builder.mul(block, plane), builder.and_(kk, _i64(LANES - 1)))

        sums = emit_fma_loop(
            builder, k, lambda kk: load_vector(builder, w, builder.mul(kk, _i64(LANES))),
            lambda kk, j: builder.load(builder.gep(x, [builder.add(channel_at(kk),
                                                                   offsets[j])]), align=4),
            NR)
        b = load_vector(builder, bias, _i64(0))
        for j in range(NR):
            with builder.if_then(builder.icmp_signed("<", _i64(j), valid)):
                store_vector(builder, builder.fadd(sums[j], b), out, _i64(j * LANES))
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(**JIT)
def _pointwise(wp, x, bias, out, c_len, chunk, groups):
    """out = conv1x1(x) + bias in NCHW16c; tasks are (chunk of tiles, group of output
    blocks). Within a task the tiles go outer and the output blocks inner: a tile's input
    (C x NR values) stays in L1 while the weight panels pass."""
    n_len, ob_len, hw = out.shape[0], out.shape[1], out.shape[2] * out.shape[3]
    cb_len = x.shape[1]
    plane = hw * LANES
    tiles = (hw + NR - 1) // NR
    total = n_len * tiles
    chunks = (total + chunk - 1) // chunk
    per_group = (ob_len + groups - 1) // groups
    for task in prange(chunks * groups):
        ck, grp = task // groups, task % groups
        for g in range(ck * chunk, min(total, (ck + 1) * chunk)):
            n, t = g // tiles, g % tiles
            valid = min(NR, hw - t * NR)
            x_at = x.ctypes.data + (n * cb_len * plane + t * NR * LANES) * 4
            for ob in range(grp * per_group, min(ob_len, (grp + 1) * per_group)):
                _tile(wp.ctypes.data + ob * c_len * LANES * 4, x_at, plane, c_len,
                      bias.ctypes.data + ob * LANES * 4,
                      out.ctypes.data + ((n * ob_len + ob) * plane + t * NR * LANES) * 4, valid)


def split(n_len: int, hw: int, ob_len: int, threads: int) -> tuple[int, int]:
    """(tiles per chunk, groups of output blocks): about four tasks per thread, from the
    tiles where there are enough of them, else from the output blocks too (a 7x7 plane at
    batch 1 is seven tiles)."""
    total = n_len * (-(-hw // NR))
    want = 4 * threads
    if total >= want:
        return -(-total // want), 1
    return 1, min(ob_len, -(-want // total))


def conv2d_pointwise_blocked(x: np.ndarray, w: np.ndarray, bias16: np.ndarray,
                             out: np.ndarray) -> None:
    """out = conv2d(x, w) + bias in NCHW16c for a float32 1x1 stride-1 unpadded conv with
    one group; bias16 the bias zero-padded to whole blocks."""
    o_len, c_len = w.shape[0], w.shape[1]
    wp = packed(w.reshape(o_len, c_len), w, LANES)
    chunk, groups = split(out.shape[0], out.shape[2] * out.shape[3], out.shape[1],
                          numba.get_num_threads())
    launch(_pointwise, wp, x, bias16, out, c_len, chunk, groups)


def applies(w_shape: tuple[int, ...], attrs: dict[str, Any], dtype: Any) -> bool:
    return (np.dtype(dtype) == np.float32 and tuple(w_shape[2:]) == (1, 1)
            and attrs["groups"] == 1 and tuple(attrs["stride"]) == (1, 1)
            and tuple(attrs["padding"]) == (0, 0, 0, 0))
