"""The weight gradient of a Winograd F(4x4, 3x3) convolution (winograd4.py has the forward
and the input gradient, and the transforms' matrices; winograd_weight_grad.py the same
scheme for F(2x2)).

y = A^T [U * V] A is linear in U, so dL/dU = sum over tiles of (A dY A^T) * V and
dL/dw = G^T (dL/dU) G: 36 GEMMs, dU[e] (O, C) += Y[e] (O, T) @ V[e].T, with the tiles as
the reduction, each thread summing its own blocks into its own dU. A tile of 4x4 output
pixels takes 36 products where F(2x2)'s four tiles take 64: 0.56x the multiply-adds, for
transforms whose entries reach 8 (A) and 16/15 (G), which round more. Float32 only, like
the forward; the autotuner measures its error against the accuracy contract per layer.
"""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu import blas
from graphcnn.backends.cpu.kernels import winograd, winograd4
from graphcnn.backends.cpu.kernels.conv_gemm import workspace
from graphcnn.backends.cpu.kernels.winograd4 import PATCH, POSITIONS, TILE, rows_scratch
from graphcnn.backends.cpu.kernels.winograd_weight_grad import MIN_GRAD_BLOCK_TILES
from graphcnn.backends.cpu.registry import JIT, TASK_JIT, launch

_HALF, _QUARTER, _EIGHTH = np.float32(0.5), np.float32(0.25), np.float32(0.125)
_TWO, _FOUR, _EIGHT = np.float32(2.0), np.float32(4.0), np.float32(8.0)
# A (6 x 4): row a's coefficients of a column's four values (a zero or one multiplies
# exactly; a non-finite dY never gets here: conv.exact_on_nonfinite)
_A = winograd4.A_T.T.astype(np.float32).copy()


@numba.njit(inline="always")
def _a(y0, y1, y2, y3):
    """A y for one column of four (A = winograd4.A_T transposed): six values."""
    return (y0, y0 + y1 + y2 + y3, y0 - y1 + y2 - y3,
            y0 + _HALF * y1 + _QUARTER * y2 + _EIGHTH * y3,
            y0 - _TWO * y1 + _FOUR * y2 - _EIGHT * y3, y3)


@numba.njit(inline="always")
def _g_t(x0, x1, x2, x3, x4, x5):
    """G^T x for one column of six (winograd4.G), in float64: three values."""
    return (x0 + (x1 - x2) / 3.0 + (x4 - 16.0 * x3) / 15.0,
            (x1 + x2) / 3.0 - (8.0 * x3 + 2.0 * x4) / 15.0,
            (x1 - x2) / 3.0 + (4.0 * x4 - 4.0 * x3) / 15.0 + x5)


@numba.njit(**TASK_JIT)
def _gradient_transform(df, o_len, oh_len, ow_len, row0, th, tw, tb, yf, y0, g):
    """yf[y0 + (e * O + o) * tb + t] = (A dY A^T)[a, b] (e = 6a + b) for the block's tiles,
    dY the 4x4 output-gradient tile (zero past the map's last row or column). Per channel,
    the block's tiles are first dealt into g (20 tb): pixel (i, j) of every tile in a run
    of its own, so that each row of A dY (4 runs after them) and of (A dY) A^T is a
    vectorized loop over the block."""
    count = tb // tw
    step = o_len * tb
    for o in range(o_len):
        for r in range(count):
            n, oy = (row0 + r) // th, TILE * ((row0 + r) % th)
            first = r * tw
            for i in range(TILE):
                run = TILE * i * tb + first
                if oy + i < oh_len:
                    s = ((n * o_len + o) * oh_len + oy + i) * ow_len
                    for k in range(ow_len):
                        g[uint64(run + (k & 3) * tb + (k >> 2))] = df[uint64(s + k)]
                    for k in range(ow_len, TILE * tw):
                        g[uint64(run + (k & 3) * tb + (k >> 2))] = 0
                else:
                    for k in range(TILE * tw):
                        g[uint64(run + (k & 3) * tb + (k >> 2))] = 0
        for a in range(PATCH):  # row a of A dY (one run per column j), then of (A dY) A^T
            c0, c1, c2, c3 = _A[a, 0], _A[a, 1], _A[a, 2], _A[a, 3]
            for j in range(TILE):
                z = TILE * TILE * tb + j * tb
                for t in range(tb):
                    g[uint64(z + t)] = (c0 * g[uint64(j * tb + t)]
                                        + c1 * g[uint64((4 + j) * tb + t)]
                                        + c2 * g[uint64((8 + j) * tb + t)]
                                        + c3 * g[uint64((12 + j) * tb + t)])
            d = y0 + PATCH * a * step + o * tb
            z = TILE * TILE * tb
            for t in range(tb):
                winograd4.put_six(yf, d + t, step, _a(g[uint64(z + t)], g[uint64(z + tb + t)],
                                                       g[uint64(z + 2 * tb + t)],
                                                       g[uint64(z + 3 * tb + t)]))


if blas.AVAILABLE:
    @numba.njit(**JIT)
    def _winograd4_weight_grad(dy, x, dw_out, pt, pl, per_block, v, yg, du, scratch):
        """dw_out = conv2d_weight_grad(dy, x): thread k sums its run of blocks into its own
        dU (slot k of du), then the slots are added and turned back by G^T dU G."""
        c_len, in_h, in_w = x.shape[1], x.shape[2], x.shape[3]
        o_len, oh_len, ow_len = dy.shape[1], dy.shape[2], dy.shape[3]
        th, tw, rows, blocks = winograd.tiling(x.shape[0], oh_len, ow_len, per_block, TILE)
        slots = v.shape[0]
        per_slot = (blocks + slots - 1) // slots
        cap = per_block * tw
        xf, df = x.reshape(x.size), dy.reshape(dy.size)
        vf, yf, uf = v.reshape(v.size), yg.reshape(yg.size), du.reshape(du.size)
        a, b, c, _ = winograd4._rows_bounds(tw)
        plane = POSITIONS * o_len * c_len
        for slot in prange(slots):
            v0, y0, u0 = slot * POSITIONS * c_len * cap, slot * POSITIONS * o_len * cap, \
                slot * plane
            row = scratch[slot]
            pad, line_rows, phases, dealt = row[:a], row[a:b], row[b:c], row[c:]
            first = True
            for blk in range(slot * per_slot, min(blocks, (slot + 1) * per_slot)):
                row0 = blk * per_block
                tb = (min(rows, row0 + per_block) - row0) * tw
                winograd4._input_transform(xf, c_len, in_h, in_w, pt, pl, row0, th, tw, tb,
                                           vf, v0, pad, line_rows, phases)
                _gradient_transform(df, o_len, oh_len, ow_len, row0, th, tw, tb, yf, y0,
                                    dealt)
                for e in range(POSITIONS):
                    blas.gemm_call(False, False, True, o_len, c_len, tb,
                                   yg.ctypes.data + (y0 + e * o_len * tb) * 4, tb,
                                   v.ctypes.data + (v0 + e * c_len * tb) * 4, tb,
                                   0.0 if first else 1.0,
                                   du.ctypes.data + (u0 + e * o_len * c_len) * 4, c_len)
                first = False
            if first:  # a thread without blocks adds nothing
                for k in range(plane):
                    uf[uint64(u0 + k)] = 0
        # dw[o, c] = G^T (the threads' dU summed) G, one task per output channel, its rows
        # of the planes summed along the row first (winograd_weight_grad.py says why)
        for o in prange(o_len):
            t = np.zeros((POSITIONS, c_len), np.float64)
            for slot in range(slots):
                for e in range(POSITIONS):
                    at = slot * plane + (e * o_len + o) * c_len
                    for k in range(c_len):
                        t[e, k] += uf[uint64(at + k)]
            h = np.empty(3 * PATCH, np.float64)  # G^T X: h[6i + b]
            for k in range(c_len):
                for col in range(PATCH):
                    h0, h1, h2 = _g_t(t[col, k], t[6 + col, k], t[12 + col, k],
                                      t[18 + col, k], t[24 + col, k], t[30 + col, k])
                    h[col], h[6 + col], h[12 + col] = h0, h1, h2
                for i in range(3):
                    r0, r1, r2 = _g_t(h[6 * i], h[6 * i + 1], h[6 * i + 2], h[6 * i + 3],
                                      h[6 * i + 4], h[6 * i + 5])
                    dw_out[o, k, i, 0] = r0
                    dw_out[o, k, i, 1] = r1
                    dw_out[o, k, i, 2] = r2


def weight_grad_scratch(dy_shape: tuple[int, ...], x_shape: tuple[int, ...]
                        ) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The workspaces conv2d_weight_grad_winograd4 takes, by role (in the order it takes
    them): per thread, a block's V and the gradient's transform, dU, and the transforms'
    rows with the block's dY tiles dealt."""
    n_len, c_len = x_shape[:2]
    o_len, dy_hw = dy_shape[1], (dy_shape[2], dy_shape[3])
    tw = winograd.tiles(dy_hw, TILE)[1]
    threads = numba.get_num_threads()
    cap = grad_block_rows(n_len, dy_hw, c_len, threads) * tw
    f32 = np.dtype(np.float32)
    return {"winograd-v": ((threads, POSITIONS * c_len * cap), f32),
            "winograd-m": ((threads, POSITIONS * o_len * cap), f32),
            "winograd-du": ((threads, POSITIONS * o_len * c_len), f32),
            "winograd-rows": ((threads, _rows_floats(tw, cap)), f32)}


def _rows_floats(tw: int, cap: int) -> int:
    """One thread's row: the input transform's pad, rows and phases, then dY dealt and
    a row of A dY (_gradient_transform's g)."""
    return rows_scratch(tw, cap) - TILE * tw - PATCH * TILE * cap + 20 * cap


def grad_block_rows(n_len: int, dy_hw: tuple[int, int], c_len: int, threads: int) -> int:
    """Tile rows per block: winograd.block_rows' rule for tiles of 4x4 and the weight
    gradient's wider blocks."""
    return winograd.block_rows(n_len, dy_hw, c_len, 4, threads, MIN_GRAD_BLOCK_TILES,
                               tile=TILE)


def conv2d_weight_grad_winograd4(dy: np.ndarray, x: np.ndarray, dw_out: np.ndarray,
                                 attrs: dict[str, Any]) -> None:
    """dw_out = conv2d_weight_grad(dy, x), float32, for a convolution winograd4.applies
    accepts."""
    per_block = grad_block_rows(x.shape[0], dy.shape[2:], x.shape[1], numba.get_num_threads())
    v, yg, du, scratch = (workspace(role, *spec) for role, spec in
                          weight_grad_scratch(dy.shape, x.shape).items())
    pads = attrs["padding"]
    with blas.one_thread_pool():
        launch(_winograd4_weight_grad, dy, x, dw_out, pads[0], pads[2], per_block, v, yg, du,
               scratch)
