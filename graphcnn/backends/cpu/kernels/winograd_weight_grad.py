"""The weight gradient of a Winograd F(2x2, 3x3) convolution (winograd.py has the forward
and the input gradient, and the transforms' algebra).

y = A^T [U * V] A is linear in U, so dL/dU = sum over tiles of (A dY A^T) * V, and
dL/dw = G^T (dL/dU) G: 16 GEMMs again, dU[e] (O, C) += Y[e] (O, T) @ V[e].T, now with
the tiles as the reduction, each thread summing its own blocks into its own dU.
"""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu import blas
from graphcnn.backends.cpu.kernels import winograd
from graphcnn.backends.cpu.kernels.conv_gemm import workspace
from graphcnn.backends.cpu.kernels.winograd import _input_transform, tiles, tiling
from graphcnn.backends.cpu.registry import JIT, TASK_JIT, launch

# Each block's GEMMs read and write all of a thread's dU (16 O C values), so blocks are
# wider than the forward's: at least this many tiles.
MIN_GRAD_BLOCK_TILES = 256


@numba.njit(inline="always")
def _dealt_row(df, s, ow_len, tw, g, at, tb):
    """Row s of dY (ow_len values) dealt by column parity: g[at + tx] = its column 2 tx,
    g[at + tb + tx] = its column 2 tx + 1 (0 past the row's end)."""
    half = ow_len // 2
    for k in range(half):
        g[uint64(at + k)] = df[uint64(s + 2 * k)]
        g[uint64(at + tb + k)] = df[uint64(s + 2 * k + 1)]
    if tw > half:
        g[uint64(at + half)] = df[uint64(s + 2 * half)]
        g[uint64(at + tb + half)] = 0


@numba.njit(**TASK_JIT)
def _gradient_transform(df, o_len, oh_len, ow_len, row0, th, tw, tb, yf, y0, g):
    """yf[y0 + (e * O + o) * tb + t] = (A dY A^T)[a, b] for the block's tiles, dY the 2x2
    output-gradient tile (zero past the output's last row or column). Per channel, the
    block's tiles are first dealt into g (4 tb): their four pixels in four runs along the
    tiles, so that each of the 16 outputs is one vectorized loop over the block (a loop
    over one tile row's few tiles, or over the tiles one at a time, is 6-10x slower at
    14x14 and 7x7)."""
    count = tb // tw
    step = o_len * tb
    for o in range(o_len):
        for r in range(count):
            n, oy = (row0 + r) // th, 2 * ((row0 + r) % th)
            s = ((n * o_len + o) * oh_len + oy) * ow_len
            _dealt_row(df, s, ow_len, tw, g, r * tw, tb)
            if oy + 1 < oh_len:
                _dealt_row(df, s + ow_len, ow_len, tw, g, 2 * tb + r * tw, tb)
            else:
                for k in range(tw):
                    g[uint64(2 * tb + r * tw + k)] = 0
                    g[uint64(3 * tb + r * tw + k)] = 0
        e = y0 + o * tb
        # z = A dY (4 x 2), rows: y0, y0 + y1, y0 - y1, -y1; then z A^T (4 x 4)
        for a in range(4):
            d = e + 4 * a * step
            for t in range(tb):
                y00, y01 = g[uint64(t)], g[uint64(tb + t)]
                y10, y11 = g[uint64(2 * tb + t)], g[uint64(3 * tb + t)]
                if a == 0:
                    z0, z1 = y00, y01
                elif a == 1:
                    z0, z1 = y00 + y10, y01 + y11
                elif a == 2:
                    z0, z1 = y00 - y10, y01 - y11
                else:
                    z0, z1 = -y10, -y11
                yf[uint64(d + t)] = z0
                yf[uint64(d + step + t)] = z0 + z1
                yf[uint64(d + 2 * step + t)] = z0 - z1
                yf[uint64(d + 3 * step + t)] = -z1


@numba.njit(inline="always")
def _gt_x_g(x0, x1, x2, x3):
    """One 4-vector of (G^T X): entries 0..2 of G^T applied to (x0, x1, x2, x3)."""
    return x0 + 0.5 * (x1 + x2), 0.5 * (x1 - x2), 0.5 * (x1 + x2) + x3


if blas.AVAILABLE:
    @numba.njit(**JIT)
    def _winograd_weight_grad(dy, x, dw_out, pt, pl, per_block, v, yg, du, scratch):
        """dw_out = conv2d_weight_grad(dy, x): thread k sums its run of blocks into its own
        dU (slot k of du), then the slots are added and turned back by G^T dU G."""
        c_len, in_h, in_w = x.shape[1], x.shape[2], x.shape[3]
        o_len, oh_len, ow_len = dy.shape[1], dy.shape[2], dy.shape[3]
        th, tw, rows, blocks = tiling(x.shape[0], oh_len, ow_len, per_block, 2)
        slots = v.shape[0]
        per_slot = (blocks + slots - 1) // slots
        cap = per_block * tw
        size = x.itemsize
        double = size == 8
        xf, df = x.reshape(x.size), dy.reshape(dy.size)
        vf, yf, uf = v.reshape(v.size), yg.reshape(yg.size), du.reshape(du.size)
        width = 2 * tw + 2
        plane = 16 * o_len * c_len
        for slot in prange(slots):
            v0, y0, u0 = slot * 16 * c_len * cap, slot * 16 * o_len * cap, slot * plane
            pad, line_rows, dealt = scratch[slot, :4 * width], scratch[slot, 4 * width:8 * width], \
                scratch[slot, 8 * width:8 * width + 4 * cap]
            first = True
            for blk in range(slot * per_slot, min(blocks, (slot + 1) * per_slot)):
                row0 = blk * per_block
                tb = (min(rows, row0 + per_block) - row0) * tw
                _input_transform(xf, c_len, in_h, in_w, pt, pl, row0, th, tw, tb, vf, v0, pad,
                                 line_rows)
                _gradient_transform(df, o_len, oh_len, ow_len, row0, th, tw, tb, yf, y0,
                                    dealt)
                for e in range(16):
                    blas.gemm_call(double, False, True, o_len, c_len, tb,
                                   yg.ctypes.data + (y0 + e * o_len * tb) * size, tb,
                                   v.ctypes.data + (v0 + e * c_len * tb) * size, tb,
                                   0.0 if first else 1.0,
                                   du.ctypes.data + (u0 + e * o_len * c_len) * size, c_len)
                first = False
            if first:  # a thread without blocks adds nothing
                for k in range(plane):
                    uf[uint64(u0 + k)] = 0
        # dw[o, c] = G^T (the threads' dU summed) G, one task per output channel: its row
        # of each of the 16 planes of each slot is summed along the row first (reading
        # the 16 planes an (o, c) pair at a time touches 16 pages per pair: 11 ms of a
        # 28 ms gradient at 512@7)
        for o in prange(o_len):
            t = np.zeros((16, c_len), np.float64)
            for slot in range(slots):
                for e in range(16):
                    row = slot * plane + (e * o_len + o) * c_len
                    for c in range(c_len):
                        t[e, c] += uf[uint64(row + c)]
            for c in range(c_len):
                # columns of G^T X, for X's 4 columns b
                z0 = _gt_x_g(t[0, c], t[4, c], t[8, c], t[12, c])
                z1 = _gt_x_g(t[1, c], t[5, c], t[9, c], t[13, c])
                z2 = _gt_x_g(t[2, c], t[6, c], t[10, c], t[14, c])
                z3 = _gt_x_g(t[3, c], t[7, c], t[11, c], t[15, c])
                for i in range(3):
                    r = _gt_x_g(z0[i], z1[i], z2[i], z3[i])
                    for j in range(3):
                        dw_out[o, c, i, j] = r[j]


def weight_grad_scratch(dy_shape: tuple[int, ...], x_shape: tuple[int, ...], dtype: Any
                        ) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The workspaces conv2d_weight_grad_winograd takes, by role (in the order it takes
    them): per thread, a block's V and the gradient's transform, dU, the input rows and the
    block's dY tiles dealt (_gradient_transform)."""
    dtype = np.dtype(dtype)
    n_len, c_len = x_shape[:2]
    o_len, dy_hw = dy_shape[1], (dy_shape[2], dy_shape[3])
    tw = tiles(dy_hw)[1]
    threads = numba.get_num_threads()
    cap = winograd.block_rows(n_len, dy_hw, c_len, dtype.itemsize, threads,
                              MIN_GRAD_BLOCK_TILES) * tw
    return {"winograd-v": ((threads, 16 * c_len * cap), dtype),
            "winograd-m": ((threads, 16 * o_len * cap), dtype),
            "winograd-du": ((threads, 16 * o_len * c_len), dtype),
            "winograd-rows": ((threads, 8 * (2 * tw + 2) + 4 * cap), dtype)}


def conv2d_weight_grad_winograd(dy: np.ndarray, x: np.ndarray, dw_out: np.ndarray,
                                attrs: dict[str, Any]) -> None:
    """dw_out = conv2d_weight_grad(dy, x), for a convolution `applies` accepts."""
    per_block = winograd.block_rows(x.shape[0], dy.shape[2:], x.shape[1], x.itemsize,
                                    numba.get_num_threads(), MIN_GRAD_BLOCK_TILES)
    v, yg, du, scratch = (workspace(role, *spec) for role, spec in
                          weight_grad_scratch(dy.shape, x.shape, x.dtype).items())
    pads = attrs["padding"]
    with blas.one_thread_pool():
        launch(_winograd_weight_grad, dy, x, dw_out, pads[0], pads[2], per_block, v, yg, du,
               scratch)
