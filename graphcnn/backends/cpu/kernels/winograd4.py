"""Winograd F(4x4, 3x3) convolution: 3x3 kernels at stride 1, float32, products on packed
panels.

The same scheme as winograd.py's F(2x2, 3x3), with tiles of 4x4 output pixels from 6x6
input patches: 36 GEMMs M[e] = U[e] @ V[e] instead of 16, each over a quarter of the
tiles, so 2.25 multiply-adds per output pixel and (o, c) pair where F(2x2) takes 4 and
im2col 9 (on maps whose sides are multiples of 4; a 14x14 map computes 16x16). The
transforms' entries grow with the tile, and so does their rounding: on ResNet's and
GoogLeNet's layers (float32, random operands) this one errs 3-23x the float32 im2col GEMM
(relative to the output's largest value, a few 1e-6), where F(2x2) errs 0.5-2x. The
accuracy contract (accuracy.py) allows 10x by default, so the cost model never takes it,
and the autotuner, which measures each layer's error, only where it is within. It is
offered for frozen weights, and for live ones (a training step) up to 128x128 channels
(candidates.f4_weights): U is 2.25x F(2x2)'s, and a large one transformed at every call
costs more than the products save.

The interpolation points are 0, 1, -1, 1/2, -2 and infinity. Of the usual choices they
give the smallest float32 error (half of 0, +-1, +-2's at 64-512 channels); every entry of
B^T and A^T is a binary fraction, exact in float32, and G's thirds and fifteenths are
rounded once, in the float64 weight transform:

    B^T = [[1, -3/2, -2,   3/2,  1,   0],     G = [[1,      0,     0    ],
           [0, -1,    1/2, 5/2,  1,   0],          [1/3,    1/3,   1/3  ],
           [0,  1,   -5/2, 1/2,  1,   0],          [-1/3,   1/3,  -1/3  ],
           [0, -2,   -1,   2,    1,   0],          [-16/15, -8/15, -4/15],
           [0,  1/2, -1,  -1/2,  1,   0],          [1/15,  -2/15,  4/15 ],
           [0,  1,   -3/2, -2,   3/2, 1]]          [0,      0,     1    ]]

    A^T = [[1, 1,  1, 1,     1,  0],
           [0, 1, -1, 1/2,  -2,  0],
           [0, 1,  1, 1/4,   4,  0],
           [0, 1, -1, 1/8,  -8,  1]]

The blocks, the threads' split and the products are winograd.py's (forward_plan,
_packed_products), with 36 positions and tiles of 4.
"""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu import blas
from graphcnn.backends.cpu.aligned import aligned_empty
from graphcnn.backends.cpu.kernels import packed_gemm, winograd
from graphcnn.backends.cpu.kernels.conv_gemm import workspace
from graphcnn.backends.cpu.registry import JIT, TASK_JIT, launch

TILE = 4          # output pixels a tile spans, each way
PATCH = TILE + 2  # input pixels its patch spans
POSITIONS = PATCH * PATCH
G = np.array([[1, 0, 0], [1 / 3, 1 / 3, 1 / 3], [-1 / 3, 1 / 3, -1 / 3],
              [-16 / 15, -8 / 15, -4 / 15], [1 / 15, -2 / 15, 4 / 15], [0, 0, 1]])
B_T = np.array([[1, -1.5, -2, 1.5, 1, 0], [0, -1, 0.5, 2.5, 1, 0], [0, 1, -2.5, 0.5, 1, 0],
                [0, -2, -1, 2, 1, 0], [0, 0.5, -1, -0.5, 1, 0], [0, 1, -1.5, -2, 1.5, 1]])
A_T = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 0.5, -2, 0], [0, 1, 1, 0.25, 4, 0],
                [0, 1, -1, 0.125, -8, 1]])


def applies(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, Any],
            dtype: Any) -> bool:
    """A float32 conv winograd.py's F(2x2) accepts (3x3, stride 1, one group)."""
    return np.dtype(dtype) == np.float32 and winograd.applies(x_shape, w_shape, attrs)


# The transforms' entries as float32 constants: a Python float would make Numba compute
# the float32 transforms in float64, converting each value both ways (half the speed).
_HALF, _QUARTER, _EIGHTH = np.float32(0.5), np.float32(0.25), np.float32(0.125)
_ONE_AND_HALF, _TWO, _TWO_AND_HALF = np.float32(1.5), np.float32(2.0), np.float32(2.5)
_FOUR, _EIGHT = np.float32(4.0), np.float32(8.0)


@numba.njit(inline="always")
def _b_t(d0, d1, d2, d3, d4, d5):
    """B^T d for one column of six."""
    return (d0 - _ONE_AND_HALF * d1 - _TWO * d2 + _ONE_AND_HALF * d3 + d4,
            -d1 + _HALF * d2 + _TWO_AND_HALF * d3 + d4,
            d1 - _TWO_AND_HALF * d2 + _HALF * d3 + d4,
            -_TWO * d1 - d2 + _TWO * d3 + d4,
            _HALF * d1 - d2 - _HALF * d3 + d4,
            d1 - _ONE_AND_HALF * d2 - _TWO * d3 + _ONE_AND_HALF * d4 + d5)


@numba.njit(inline="always")
def _a_t(m0, m1, m2, m3, m4, m5):
    """A^T m for one column of six."""
    return (m0 + m1 + m2 + m3 + m4,
            m1 - m2 + _HALF * m3 - _TWO * m4,
            m1 + m2 + _QUARTER * m3 + _FOUR * m4,
            m1 - m2 + _EIGHTH * m3 - _EIGHT * m4 + m5)


@numba.njit(inline="always")
def _g(t0, t1, t2):
    """G t for one column of three taps, in float64."""
    return (t0, (t0 + t1 + t2) / 3.0, (t1 - t0 - t2) / 3.0,
            -(16.0 * t0 + 8.0 * t1 + 4.0 * t2) / 15.0, (t0 - 2.0 * t1 + 4.0 * t2) / 15.0, t2)


@numba.njit(**JIT)
def transform_weights(w, panels, flip):
    """panels[6a + b, row // 16, col, row % 16] = (G w[row, col] G^T)[a, b], summed in
    float64 and rounded once, where row is the forward-shaped conv's output channel and
    col its input channel: (o, c), or with `flip`, the input gradient's weight w'[c, o] =
    w[o, c] turned by 180 degrees, (c, o). One task per row: its taps are gathered into 9
    contiguous runs first, so each step of G g G^T is one vectorized loop along the row."""
    o_len, c_len = w.shape[0], w.shape[1]
    rows, cols = (c_len, o_len) if flip else (o_len, c_len)
    lanes = panels.shape[3]
    plane = panels.shape[1] * panels.shape[2] * lanes  # one position's panels
    wf, pf = w.reshape(w.size), panels.reshape(panels.size)
    for row in prange(rows):
        g = winograd.gathered_taps(wf, row, cols, c_len, flip)  # g[(3i + j) * cols + col]
        r = np.empty(18 * cols, np.float64)  # G g: r[(3a + j) * cols + col]
        for j in range(3):
            for col in range(cols):
                r0, r1, r2, r3, r4, r5 = _g(g[uint64(j * cols + col)],
                                            g[uint64((3 + j) * cols + col)],
                                            g[uint64((6 + j) * cols + col)])
                r[uint64(j * cols + col)] = r0
                r[uint64((3 + j) * cols + col)] = r1
                r[uint64((6 + j) * cols + col)] = r2
                r[uint64((9 + j) * cols + col)] = r3
                r[uint64((12 + j) * cols + col)] = r4
                r[uint64((15 + j) * cols + col)] = r5
        first = (row // lanes * cols) * lanes + row % lanes
        for a in range(PATCH):  # (G g) G^T, into the panels
            d = PATCH * a * plane + first
            for col in range(cols):
                u0, u1, u2, u3, u4, u5 = _g(r[uint64(3 * a * cols + col)],
                                            r[uint64((3 * a + 1) * cols + col)],
                                            r[uint64((3 * a + 2) * cols + col)])
                at = d + col * lanes
                pf[uint64(at)] = u0
                pf[uint64(at + plane)] = u1
                pf[uint64(at + 2 * plane)] = u2
                pf[uint64(at + 3 * plane)] = u3
                pf[uint64(at + 4 * plane)] = u4
                pf[uint64(at + 5 * plane)] = u5


@numba.njit(inline="always")
def put_six(f, at, step, values):
    """f[at + k * step] = values[k] for the six values of one transformed column."""
    f[uint64(at)] = values[0]
    f[uint64(at + step)] = values[1]
    f[uint64(at + 2 * step)] = values[2]
    f[uint64(at + 3 * step)] = values[3]
    f[uint64(at + 4 * step)] = values[4]
    f[uint64(at + 5 * step)] = values[5]


@numba.njit(**TASK_JIT)
def _input_transform(xf, c_len, in_h, in_w, pt, pl, row0, th, tw, tb, vf, v0, pad, rows,
                     phases):
    """V for the tb // tw tile rows from row0 (of all images in a row, th per image):
    vf[v0 + (e * C + c) * tb + t]. Each pass is a loop along contiguous data, which
    vectorizes: the row pass (B^T d) along six whole padded rows; then each row is dealt
    into its four phases (phases[(4a + j) * (tw + 1) + tx] = row a at x = 4 tx + j), so
    the column pass reads tile tx's six values as phases 0-3 at tx and 0-1 at tx + 1."""
    width = TILE * tw + 2
    span = tw + 1
    count = tb // tw
    step = c_len * tb
    for c in range(c_len):
        for r in range(count):
            n, ty = (row0 + r) // th, (row0 + r) % th
            src = (n * c_len + c) * in_h * in_w
            y0 = TILE * ty - pt
            winograd.padded_rows(xf, src, y0, PATCH, in_h, in_w, pl, width, pad)
            for k in range(width):  # rows of B^T d
                t0, t1, t2, t3, t4, t5 = _b_t(
                    pad[uint64(k)], pad[uint64(width + k)], pad[uint64(2 * width + k)],
                    pad[uint64(3 * width + k)], pad[uint64(4 * width + k)],
                    pad[uint64(5 * width + k)])
                rows[uint64(k)] = t0
                rows[uint64(width + k)] = t1
                rows[uint64(2 * width + k)] = t2
                rows[uint64(3 * width + k)] = t3
                rows[uint64(4 * width + k)] = t4
                rows[uint64(5 * width + k)] = t5
            for a in range(PATCH):  # deal each row into its four phases
                for k in range(width):
                    phases[uint64((TILE * a + (k & 3)) * span + (k >> 2))] = \
                        rows[uint64(a * width + k)]
            first = r * tw
            for a in range(PATCH):  # (B^T d) B, all the row's tiles at once
                p = TILE * a * span
                e0 = v0 + (PATCH * a * c_len + c) * tb + first
                for tx in range(tw):
                    put_six(vf, e0 + tx, step, _b_t(
                        phases[uint64(p + tx)], phases[uint64(p + span + tx)],
                        phases[uint64(p + 2 * span + tx)], phases[uint64(p + 3 * span + tx)],
                        phases[uint64(p + tx + 1)], phases[uint64(p + span + tx + 1)]))


@numba.njit(**TASK_JIT)
def _output_transform(mf, m0, o_len, o0, o_rows, tb, row0, th, tw, of, oh_len, ow_len,
                      line, s):
    """The output rows of channels o0 <= o < o0 + o_rows (of o_len) for the tb // tw tile
    rows from row0, from M (mf[m0 + (e * o_rows + o - o0) * tb + t]) by Y = A^T M A, in
    two passes along the block's tiles (contiguous, so they vectorize): S = A^T M into
    s[(4b + i) * tb + t], then each output row i of every tile from S's row i."""
    count = tb // tw
    step = o_rows * tb
    for oo in range(o_rows):
        o = o0 + oo
        for b in range(PATCH):
            q0 = m0 + oo * tb + b * step
            d = TILE * b * tb
            for t in range(tb):
                q = q0 + t
                s0, s1, s2, s3 = _a_t(mf[uint64(q)], mf[uint64(q + 6 * step)],
                                      mf[uint64(q + 12 * step)], mf[uint64(q + 18 * step)],
                                      mf[uint64(q + 24 * step)], mf[uint64(q + 30 * step)])
                s[uint64(d + t)] = s0
                s[uint64(d + tb + t)] = s1
                s[uint64(d + 2 * tb + t)] = s2
                s[uint64(d + 3 * tb + t)] = s3
        for r in range(count):
            n, oy = (row0 + r) // th, TILE * ((row0 + r) % th)
            for i in range(min(TILE, oh_len - oy)):
                first = i * tb + r * tw
                for tx in range(tw):
                    q = first + tx
                    y0, y1, y2, y3 = _a_t(s[uint64(q)], s[uint64(q + 4 * tb)],
                                          s[uint64(q + 8 * tb)], s[uint64(q + 12 * tb)],
                                          s[uint64(q + 16 * tb)], s[uint64(q + 20 * tb)])
                    line[uint64(TILE * tx)] = y0
                    line[uint64(TILE * tx + 1)] = y1
                    line[uint64(TILE * tx + 2)] = y2
                    line[uint64(TILE * tx + 3)] = y3
                d0 = ((n * o_len + o) * oh_len + oy + i) * ow_len
                for k in range(ow_len):
                    of[uint64(d0 + k)] = line[uint64(k)]


def rows_scratch(tw: int, cap: int) -> int:
    """Floats of one thread's transform rows for tw tiles across and blocks of up to cap
    tiles: the padded input rows, their transform and its phases, an output line, and
    A^T M for the block."""
    width = TILE * tw + 2
    return 2 * PATCH * width + PATCH * TILE * (tw + 1) + TILE * tw + PATCH * TILE * cap


@numba.njit(inline="always")
def _rows_bounds(tw):
    """Where rows_scratch's parts end in one thread's row: pad, rows, phases, line (A^T M
    for the block is the rest)."""
    width = TILE * tw + 2
    a = PATCH * width
    b = a + PATCH * width
    c = b + PATCH * TILE * (tw + 1)
    return a, b, c, c + TILE * tw


@numba.njit(**JIT)
def _winograd4(x, u, out, pt, pl, per_block, o_parts, v, m, scratch, tiles):
    """out = conv2d(x, w) for u = weight_transform(w), in blocks of `per_block` tile rows
    (of all images in a row); thread k (slot k of v, m, scratch and tiles) runs one run of
    blocks for one of `o_parts` ranges of output channels (winograd._winograd's split)."""
    c_len, in_h, in_w = x.shape[1], x.shape[2], x.shape[3]
    o_len, oh_len, ow_len = out.shape[1], out.shape[2], out.shape[3]
    th, tw, rows, blocks = winograd.tiling(x.shape[0], oh_len, ow_len, per_block, TILE)
    slots = v.shape[0]
    row_parts = slots // o_parts
    per_slot = (blocks + row_parts - 1) // row_parts
    o_step = winograd._channel_step(o_len, o_parts, True)
    xf, of = x.reshape(x.size), out.reshape(out.size)
    vf, mf = v.reshape(v.size), m.reshape(m.size)
    a, b, c, d = _rows_bounds(tw)
    for slot in prange(slots):
        part, o0 = slot // o_parts, (slot % o_parts) * o_step
        o_rows = min(o_len, o0 + o_step) - o0
        if o_rows <= 0:
            continue
        v0, m0 = slot * v.shape[1], slot * m.shape[1]
        row = scratch[slot]
        pad, line_rows = row[:a], row[a:b]
        phases, line, s = row[b:c], row[c:d], row[d:]
        for blk in range(part * per_slot, min(blocks, (part + 1) * per_slot)):
            row0 = blk * per_block
            tb = (min(rows, row0 + per_block) - row0) * tw
            _input_transform(xf, c_len, in_h, in_w, pt, pl, row0, th, tw, tb, vf, v0, pad,
                             line_rows, phases)
            winograd._packed_products(u, v, v0, c_len, tb, mf, m0, o0, o_rows, tiles[slot])
            _output_transform(mf, m0, o_len, o0, o_rows, tb, row0, th, tw, of, oh_len,
                              ow_len, line, s)


def weight_transform(w: np.ndarray, flip: bool = False) -> np.ndarray:
    """U = G w G^T, summed in float64, rounded to float32 once and written straight into
    (36, O/16, C, 16) panels for packed_gemm's microkernel (with `flip`: of the input
    gradient's weight, C and O swapped). The cpu strategy makes it once for a frozen
    weight; a live one is transformed at every call."""
    rows, cols = (w.shape[1], w.shape[0]) if flip else (w.shape[0], w.shape[1])
    width = packed_gemm.LANES
    panels = aligned_empty((POSITIONS, -(-rows // width), cols, width), np.float32)
    if rows % width:
        panels[:, -1] = 0   # the last panel's rows past the channels: zeros the GEMM reads
    launch(transform_weights, w, panels, flip)
    return panels


# A block's V is about this many bytes, half of F(2x2)'s: ResNet's 128@28 at batch 16,
# one process, in turns with the host's cross-core probe (frozen weights, best of 3, ms):
# blocks of 56 tiles 10.1-10.2 in the fast phase and 12.5-13.0 in the slow one, of 28
# tiles 8.7-8.9 and 9.7-9.9; 64@56, 256@14 and 512@7 within 0.5 ms either way.
BLOCK_BYTES = winograd.BLOCK_BYTES // 2


def forward_plan(n_len: int, out_hw: tuple[int, int], c_len: int, threads: int
                 ) -> tuple[int, int]:
    """(tile rows per block, output-channel parts): winograd.forward_plan's rule for
    tiles of 4x4, with blocks of BLOCK_BYTES of V."""
    return winograd.forward_plan(n_len, out_hw, c_len, 4, threads, tile=TILE,
                                 block_bytes=BLOCK_BYTES)


def run_scratch(x_shape: tuple[int, ...], out_shape: tuple[int, ...]
                ) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The workspaces _run takes for x (N, C, H, W) into out (N, O, OH, OW), by role in
    the order it takes them: per thread, a block's V and M, the transforms' rows, and the
    microkernel's tile."""
    n_len, c_len = x_shape[:2]
    o_len, out_hw = out_shape[1], (out_shape[2], out_shape[3])
    tw = winograd.tiles(out_hw, TILE)[1]
    threads = numba.get_num_threads()
    per_block, o_parts = forward_plan(n_len, out_hw, c_len, threads)
    cap = per_block * tw
    o_step = winograd.channel_step(o_len, o_parts, True)
    f32 = np.dtype(np.float32)
    return {"winograd-v": ((threads, POSITIONS * c_len * cap + packed_gemm.NR), f32),
            "winograd-m": ((threads, POSITIONS * o_step * cap), f32),
            "winograd-rows": ((threads, rows_scratch(tw, cap)), f32),
            "winograd-tile": ((threads, 3 * packed_gemm.LANES * packed_gemm.NR), f32)}


def _run(x: np.ndarray, u: np.ndarray, out: np.ndarray, pt: int, pl: int) -> None:
    """out = the F(4x4, 3x3) convolution of x with u = weight_transform(w)."""
    threads = numba.get_num_threads()
    per_block, o_parts = forward_plan(x.shape[0], out.shape[2:], x.shape[1], threads)
    buffers = {role: workspace(role, *spec)
               for role, spec in run_scratch(x.shape, out.shape).items()}
    v, m, scratch, tile = (buffers[role] for role in ("winograd-v", "winograd-m",
                                                      "winograd-rows", "winograd-tile"))
    v[:, v.shape[1] - packed_gemm.NR:] = 0  # what _packed_products reads past a block's V
    with blas.one_thread_pool():
        launch(_winograd4, x, u, out, pt, pl, per_block, o_parts, v, m, scratch, tile)


def conv2d_winograd4(x: np.ndarray, w: np.ndarray, out: np.ndarray, attrs: dict[str, Any],
                     u: np.ndarray | None = None) -> None:
    """out = conv2d(x, w) without bias, float32, for a convolution `applies` accepts; `u`:
    weight_transform(w) made already, else made here."""
    pads = attrs["padding"]
    _run(x, weight_transform(w) if u is None else u, out, pads[0], pads[2])


def conv2d_input_grad_winograd4(dy: np.ndarray, w: np.ndarray, dx: np.ndarray,
                                attrs: dict[str, Any], u: np.ndarray | None = None) -> None:
    """dx = conv2d_input_grad(dy, w) as the F(4x4) conv of dy with the weight turned,
    padded by 2 - p (winograd.input_grad_applies); `u`: weight_transform(w, flip=True)."""
    pads = attrs["padding"]
    _run(dy, weight_transform(w, flip=True) if u is None else u, dx, 2 - pads[0],
         2 - pads[2])
