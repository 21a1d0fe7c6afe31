"""Convolutions with their output in NCHW16c (the layout of the graph's *_blocked ops): 1x1
ones on an NCHW16c input, and any other one-group convolution on an NCHW16c or an NCHW
input (MobileNet's 3x3 stem reads the NCHW image and writes blocks, so no conversion is
needed after it).

In NCHW16c a pixel's 16 channels of one block are one vector, so a tile of the output, 16
output channels by NR consecutive pixels of the plane, is NR whole vectors stored one after
the other: the microkernel keeps NB such tiles in registers; per k (an input channel and a
kernel tap) it loads the 16 weights of each of the NB output blocks (a panel packed once, as
packed_gemm's `packed(.., width=16 NB)`: (O/(16 NB), C*kH*kW, 16 NB)) and broadcasts the
input's value at each of the NR pixels, for NB * NR multiply-adds. Where that value lies is
a table of offsets by k (as the implicit GEMM's, implicit_gemm.py) plus the pixel's own
offset (pixel_offsets; a tile runs on across the end of a row, so no row wastes a partial
tile): no im2col. NB x NR is 2 x 8, or 4 x 7 where the output's blocks come in fours (the
wide tile: more multiply-adds per load). Only the real input channels are read (the padding
lanes of a blocked input's last block never are), and the output's padding lanes come out
as zero weights and zero bias make them: zero.
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic

from graphcnn.backends.cpu.kernels.conv_gemm import workspace
from graphcnn.backends.cpu.kernels.packed_gemm import packed
from graphcnn.backends.cpu.kernels.vector_ir import (
    F32,
    I64,
    LANES,
    emit_epilogue,
    emit_fma_loop,
    i64,
    load_vector,
    store_vector,
)
from graphcnn.backends.cpu.registry import JIT, TASK_JIT, launch

NR = 8  # pixels per tile: eight accumulators, one weight load and eight broadcasts per k


NB = 2  # output blocks per panel: 16 accumulators, two weight loads per eight broadcasts

# Wide panels, where the output channels come in fours of blocks: 4 blocks by 7 pixels, 28
# accumulators, four weight loads and seven broadcasts per k (28 multiply-adds for 11 loads
# against 16 for 10). ResNet's 64 -> 128 3x3/2 at batch 16, in one process: 281 GFLOP/s
# against 228 for 2 x 8, 262 for 4 x 5, 258 for 4 x 6 (their tiles overhang 28-pixel rows).
WIDE_NB, WIDE_NR = 4, 7

PANELS_BYTES = 1 << 20  # the weight panels a task's tiles pass over at once: half an L2


def _tile_codegen(nb: int, nr: int) -> tuple[Any, Any]:
    """The signature and code of a tile of nb blocks by nr pixels (see tile)."""
    sig = types.void(types.uintp, types.uintp, types.uintp, types.int64, types.uintp,
                     types.uintp, types.uintp, types.int64, types.int64, types.int64,
                     types.uintp, types.int64, types.float32, types.float32)

    def codegen(context, builder, signature, args):
        (w_int, x_int, t_int, k, offsets_int, b_int, o_int, plane, blocks, valid, s_int, mode,
         low, high) = args
        w, x, bias, out, side = (builder.inttoptr(v, F32.as_pointer())
                                 for v in (w_int, x_int, b_int, o_int, s_int))
        table = builder.inttoptr(t_int, I64.as_pointer())
        pixel_at = builder.inttoptr(offsets_int, I64.as_pointer())
        offsets = [builder.load(builder.gep(pixel_at, [i64(j)]), align=8) for j in range(nr)]
        at: dict[int, ir.Value] = {}

        def scalar_at(kk: ir.Value, j: int) -> ir.Value:
            if j == 0:  # one table load per k, shared by the nr pixels
                at[0] = builder.load(builder.gep(table, [kk]), align=8)
            return builder.load(builder.gep(x, [builder.add(at[0], offsets[j])]), align=4)

        def vector_at(kk: ir.Value, v: int = 0) -> ir.Value:
            return load_vector(builder, w, builder.add(builder.mul(kk, i64(nb * LANES)),
                                                       i64(v * LANES)))

        sums = emit_fma_loop(builder, k, vector_at, scalar_at, nr, nb)
        for v in range(nb):
            with builder.if_then(builder.icmp_signed("<", i64(v), blocks)):
                b = load_vector(builder, bias, i64(v * LANES))
                base = builder.mul(plane, i64(v))
                for j in range(nr):
                    with builder.if_then(builder.icmp_signed("<", i64(j), valid)):
                        at_j = builder.add(base, i64(j * LANES))
                        value = emit_epilogue(builder, builder.fadd(sums[v * nr + j], b),
                                              side, at_j, mode, low, high)
                        store_vector(builder, value, out, at_j)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def tile(typingctx, w_addr, x_addr, table_addr, k_len, offsets_addr, bias_addr, out_addr,
         plane, blocks, valid, side_addr, mode, low, high):
    """out[v * plane + j * 16 + l] = bias[v * 16 + l] + sum_k w[k * 32 + v * 16 + l] *
    x[table[k] + offsets[j]] for output blocks v < blocks (<= NB) and pixels j < valid
    (<= NR); k_len >= 1; offsets: NR int64s, those past `valid` the last valid pixel's (in
    bounds, not stored). A missing second block computes on zero weights, unstored. The
    epilogue (`mode`, see emit_epilogue) reads side at the output's offsets."""
    return _tile_codegen(NB, NR)


@intrinsic
def wide_tile(typingctx, w_addr, x_addr, table_addr, k_len, offsets_addr, bias_addr,
              out_addr, plane, blocks, valid, side_addr, mode, low, high):
    """tile for wide panels: WIDE_NB blocks (w[k * 64 + v * 16 + l]) by WIDE_NR pixels."""
    return _tile_codegen(WIDE_NB, WIDE_NR)


@numba.njit(**TASK_JIT)
def pixel_offsets(offsets, first, valid, row_len, step, row_step):
    """offsets[j] = where output pixel first + j's window starts in the input (row-major
    pixels, row_len a row; step and row_step in floats), for j < valid, and the last valid
    pixel's past it: a tile may run across the ends of rows."""
    row = first // row_len   # one division a tile: a tile of a small K is a few hundred cycles
    col = first - row * row_len
    for j in range(offsets.shape[0]):
        offsets[j] = row * row_step + col * step
        if j + 1 < valid:
            col += 1
            if col == row_len:
                row, col = row + 1, 0


@numba.njit(**JIT)
def _conv_rows(wp, x, table, bias, out, step, row_step, image_step, row_len, chunk, groups,
               in_cache, side, mode, low, high):
    """out = conv(x) + bias, out in NCHW16c: tile (n, t) is the plane's pixels t * nr on
    (row-major, across rows' ends, row_len a row), reading x from n * image_step on through
    the table and pixel_offsets. nr and the blocks per panel are the wide tile's where the
    panels are (wp.shape[2] == 64), else the tile's. Tasks are (chunk of tiles, group of
    weight panels); within one, `in_cache` panels at a time (an L2's share), the tiles go
    outer and those panels inner: a tile's input stays in L1 while they pass, and they stay
    in L2 while the tiles pass (a 7x7 plane's 512 -> 512 3x3 has 9.4 MB of weights: all
    the panels inner had each tile read them from L3 again)."""
    n_len, ob_len = out.shape[0], out.shape[1]
    panels = wp.shape[0]
    wide = wp.shape[2] == WIDE_NB * LANES
    nb, nr = (WIDE_NB, WIDE_NR) if wide else (NB, NR)
    pixels = out.shape[2] * out.shape[3]
    plane = pixels * LANES
    k_len = table.shape[0]
    per_image = (pixels + nr - 1) // nr
    total = n_len * per_image
    chunks = (total + chunk - 1) // chunk
    per_group = (panels + groups - 1) // groups
    x0, o0, t0, b0, w0 = (x.ctypes.data, out.ctypes.data, table.ctypes.data,
                          bias.ctypes.data, wp.ctypes.data)
    s0 = side.ctypes.data
    for task in prange(chunks * groups):
        ck, grp = task // groups, task % groups
        offsets = np.empty(nr, np.int64)
        f0 = offsets.ctypes.data
        last_panel = min(panels, (grp + 1) * per_group)
        for p0 in range(grp * per_group, last_panel, in_cache):
            for g in range(ck * chunk, min(total, (ck + 1) * chunk)):
                image, pixel = g // per_image, g % per_image * nr
                valid = min(nr, pixels - pixel)
                pixel_offsets(offsets, pixel, valid, row_len, step, row_step)
                x_at = x0 + image * image_step * 4
                for p in range(p0, min(last_panel, p0 + in_cache)):
                    ob = p * nb
                    at = ((image * ob_len + ob) * plane + pixel * LANES) * 4
                    w_at, b_at, blocks = (w0 + p * k_len * nb * LANES * 4,
                                          b0 + ob * LANES * 4, min(nb, ob_len - ob))
                    if wide:
                        wide_tile(w_at, x_at, t0, k_len, f0, b_at, o0 + at, plane, blocks,
                                  valid, s0 + at, mode, low, high)
                    else:
                        tile(w_at, x_at, t0, k_len, f0, b_at, o0 + at, plane, blocks, valid,
                             s0 + at, mode, low, high)


@functools.lru_cache(maxsize=1024)
def split(tiles: int, panels: int, threads: int, weight_bytes: int, input_bytes: int
          ) -> tuple[int, int]:
    """(tiles per chunk, groups of weight panels). Each chunk of tiles reads all the weights
    of its group once, and each group reads its chunk's input, so a split into `chunks` x
    `groups` tasks moves about chunks * weight_bytes + groups * input_bytes. Of the splits
    into about four tasks per thread or into single tiles, the one that moves least among
    those whose threads get even shares (within 5%; _prange_shares) wins: a 56x56 plane's
    few weights, one group; a 7x7 plane at batch 1 under 4 MB of weights, one chunk; seven
    tiles over five panels at batch 1, tile by tile, for balance."""
    want = 4 * threads
    options = []
    for groups in range(1, min(panels, want) + 1):
        per_group = -(-panels // groups)
        used = -(-panels // per_group)
        if used != groups:
            continue
        # single tiles only where they are few: a large plane's chunks balance anyway
        for chunks in {min(tiles, -(-want // groups))} | ({tiles} if tiles <= 8 * want
                                                           else set()):
            chunk = -(-tiles // chunks)
            chunks = -(-tiles // chunk)
            work = [min(chunk, tiles - c * chunk) * min(per_group, panels - g * per_group)
                    for c in range(chunks) for g in range(groups)]
            moved = chunks * weight_bytes + groups * input_bytes
            options.append((_prange_shares(work, threads) > 1.05, moved, chunk, groups))
    _, _, chunk, groups = min(options)
    return chunk, groups


def _prange_shares(work: list[int], threads: int) -> float:
    """The largest thread's work over the mean when a prange over these tasks gives each
    thread one contiguous run of them (as Numba's scheduler does)."""
    length = len(work)
    shares = [sum(work[t * length // threads:(t + 1) * length // threads])
              for t in range(threads)]
    return max(shares) * threads / max(1, sum(work))


class Epilogue(NamedTuple):
    """What a kernel applies before it stores (see emit_epilogue): `side` (the output's
    shape) added if mode has ADD_SIDE, then clip(low, high) or relu."""
    side: np.ndarray | None = None
    mode: int = 0
    low: float = 0.0
    high: float = 0.0

    def args(self, out: np.ndarray) -> tuple[Any, ...]:
        """(side, mode, low, high) as the kernels take them (side: out when absent)."""
        side = out if self.side is None else self.side
        return side, self.mode, np.float32(self.low), np.float32(self.high)


NO_EPILOGUE = Epilogue()


def panel_blocks(out_channels: int) -> int:
    """Output blocks per weight panel: WIDE_NB where the blocks come in fours (no panel
    computes on zero weights), else NB."""
    return WIDE_NB if -(-out_channels // LANES) % WIDE_NB == 0 else NB


def packed_weights(w: np.ndarray, blocks_per_panel: int | None = None) -> np.ndarray:
    """A conv weight (O, C, kH, kW) as the (O/(16 nb), C*kH*kW, 16 nb) panels _conv_rows
    reads, nb = blocks_per_panel (panel_blocks(O) if None)."""
    nb = panel_blocks(w.shape[0]) if blocks_per_panel is None else blocks_per_panel
    return packed(w.reshape(w.shape[0], -1), nb * LANES)


def _run(wp: np.ndarray, xp: np.ndarray, table: np.ndarray, bias16: np.ndarray,
         out: np.ndarray, step: int, row_step: int, image_step: int, row_len: int,
         epilogue: Epilogue) -> None:
    nr = WIDE_NR if wp.shape[2] == WIDE_NB * LANES else NR
    tiles = out.shape[0] * -(-out.shape[2] * out.shape[3] // nr)
    chunk, groups = split(tiles, wp.shape[0], numba.get_num_threads(), wp.nbytes, xp.nbytes)
    in_cache = max(1, PANELS_BYTES // (wp.shape[1] * wp.shape[2] * 4))
    launch(_conv_rows, wp, xp, table, bias16, out, step, row_step, image_step, row_len, chunk,
           groups, in_cache, *epilogue.args(out))


@functools.lru_cache(maxsize=256)
def pointwise_table(c_len: int, hw: int) -> np.ndarray:
    """Where input channel k of pixel 0 lies in a blocked image of hw pixels."""
    c = np.arange(c_len, dtype=np.int64)
    return _frozen(c // LANES * hw * LANES + c % LANES)


def conv2d_pointwise_nchw16c(x: np.ndarray, wp: np.ndarray, bias16: np.ndarray,
                             out: np.ndarray, epilogue: Epilogue = NO_EPILOGUE) -> None:
    """out = conv2d(x, w) + bias, x and out NCHW16c, for a float32 1x1 stride-1 unpadded
    conv with one group (wp: packed_weights(w); bias16: the bias zero-padded to whole
    blocks): the plane is seen as one row."""
    hw = x.shape[2] * x.shape[3]
    _run(wp, x, pointwise_table(wp.shape[1], hw), bias16, out, LANES, 0,
         x.shape[1] * hw * LANES, hw, epilogue)


@numba.njit(**JIT)
def _pad_image(x, xp, pt, pl):
    """xp = x with pt rows and pl columns of zeros before (and what xp has room for
    after), for NCHW (4-d) or NCHW16c (5-d seen as 4-d with the lanes in the columns)."""
    n_len, c_len, h, w = x.shape
    hp, wp = xp.shape[2], xp.shape[3]
    for task in prange(n_len * c_len):
        n, c = task // c_len, task % c_len
        for r in range(hp):
            for q in range(wp):
                xp[n, c, r, q] = 0
            if pt <= r < pt + h:
                for q in range(w):
                    xp[n, c, r, pl + q] = x[n, c, r - pt, q]


def general_scratch(x_shape: tuple[int, ...], attrs: dict[str, Any], dtype: Any
                    ) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The workspace conv2d_nchw16c_general takes: the zero-padded copy of x, if it pads."""
    pads = attrs["padding"]
    if not any(pads):
        return {}
    lanes = LANES if len(x_shape) == 5 else 1
    n, cx, h, wd = x_shape[:4]
    return {"nchw16c-padded": ((n, cx, h + pads[0] + pads[1],
                                (wd + pads[2] + pads[3]) * lanes), np.dtype(dtype))}


def conv2d_nchw16c_general(x: np.ndarray, w: np.ndarray, bias16: np.ndarray, out: np.ndarray,
                           attrs: dict[str, Any], epilogue: Epilogue = NO_EPILOGUE,
                           panels: np.ndarray | None = None) -> None:
    """out (NCHW16c) = conv2d(x, w) + bias for any float32 one-group conv, x NCHW16c (5-d)
    or NCHW (4-d), through a zero-padded copy of x when the conv pads; `panels`:
    packed_weights(w) made already."""
    (sh, sw), (dh, dw), pads = attrs["stride"], attrs["dilation"], attrs["padding"]
    blocked_in = x.ndim == 5
    lanes = LANES if blocked_in else 1
    n, cx, h, wd = x.shape[:4]
    hp, wp = h + pads[0] + pads[1], wd + pads[2] + pads[3]
    xp = x
    if any(pads):
        xp = workspace("nchw16c-padded", (n, cx, hp, wp * lanes), x.dtype)
        launch(_pad_image, x.reshape(n, cx, h, wd * lanes), xp, pads[0], pads[2] * lanes)
    table = _tap_table(w.shape[1:], hp, wp, dh, dw, blocked_in)
    _run(packed_weights(w) if panels is None else panels, xp, table, bias16, out, sw * lanes,
         sh * wp * lanes, cx * hp * wp * lanes, out.shape[3], epilogue)


@functools.lru_cache(maxsize=256)
def _tap_table(w_shape: tuple[int, ...], hp: int, wp: int, dh: int, dw: int,
               blocked_in: bool) -> np.ndarray:
    """Where input k = (channel, tap row, tap column) of output pixel 0 lies in the padded
    image (hp x wp a plane), NCHW16c or NCHW."""
    c_len, kh, kw = w_shape
    c, i, j = np.meshgrid(np.arange(c_len), np.arange(kh), np.arange(kw), indexing="ij")
    c, i, j = c.ravel().astype(np.int64), i.ravel(), j.ravel()
    lanes = LANES if blocked_in else 1
    channel = c // LANES * hp * wp * LANES + c % LANES if blocked_in else c * hp * wp
    return _frozen((channel + (i * dh * wp + j * dw) * lanes).astype(np.int64))


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)  # shared by every call that finds it in the cache
    return a
