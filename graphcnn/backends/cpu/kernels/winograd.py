"""Winograd F(2x2, 3x3) convolution for 3x3 kernels at stride 1 (no dilation, no groups).

Each 2x2 block of output pixels (a *tile*) comes from a 4x4 patch d of the padded input:

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (* elementwise, per channel pair, summed over c)

so the 36 multiply-adds a tile costs per (o, c) pair in a direct or im2col convolution
become 16: the 16 elementwise products, summed over c, are 16 GEMMs

    M[e] (O, T) = U[e] (O, C) @ V[e] (C, T),   e = 4a + b over the 4x4 transformed positions

with U = G g G^T (the weight transform, once per weight), V = B^T d B (the input transform)
and T the tiles. 2.25x fewer GEMM flops than im2col, for two transforms that are additions
only. The tiles are cut into blocks of whole tile rows; a thread transforms its block's
input, runs its 16 GEMMs and transforms their output, so the block's V and M stay in that
core's cache (as in conv_gemm._conv_blocks). Where it wins is measured (autotune.py).

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]

The transforms are exact in real arithmetic; in float32 the sums round differently from a
direct convolution (relative differences of a few 1e-7 on ResNet's layers).
"""
from __future__ import annotations

import weakref
from typing import Any

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu import blas
from graphcnn.backends.cpu.registry import JIT, TASK_JIT, launch, recording

WINOGRAD_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
# A block of tiles holds about this many bytes of V, but at least MIN_BLOCK_TILES tiles:
# each block's 16 GEMMs pack all of U again, so a narrow block spends its time packing.
BLOCK_BYTES = 1 << 20
MIN_BLOCK_TILES = 128
# Below this many tiles per block the GEMMs are too thin to be worth trying.
MIN_TILES_PER_BLOCK = 16


def applies(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, Any]) -> bool:
    """3x3 kernels at stride 1, no dilation, one group (any padding: the input transform
    reads zeros outside the image), with numpy's OpenBLAS to call."""
    return (blas.AVAILABLE and tuple(w_shape[2:]) == (3, 3) and attrs["groups"] == 1
            and tuple(attrs["stride"]) == (1, 1) and tuple(attrs["dilation"]) == (1, 1))


def tiles(out_hw: tuple[int, int]) -> tuple[int, int]:
    return (out_hw[0] + 1) // 2, (out_hw[1] + 1) // 2


def block_rows(n_len: int, out_hw: tuple[int, int], c_len: int, itemsize: int,
               threads: int) -> int:
    """Tile rows per block: about BLOCK_BYTES of V (at least MIN_BLOCK_TILES tiles), and a
    block count that is a multiple of the thread count, so every thread gets as many."""
    th, tw = tiles(out_hw)
    rows = n_len * th  # the tile rows of all the images, in a row
    wanted = max(MIN_BLOCK_TILES, BLOCK_BYTES // (16 * c_len * itemsize))
    blocks = -(-rows // max(1, -(-wanted // tw)))
    blocks = max(threads, -(-blocks // threads) * threads)
    return max(1, -(-rows // blocks))


def worth_trying(n_len: int, out_hw: tuple[int, int], c_len: int, itemsize: int,
                 threads: int) -> bool:
    per = block_rows(n_len, out_hw, c_len, itemsize, threads)
    return per * tiles(out_hw)[1] >= MIN_TILES_PER_BLOCK


@numba.njit(**JIT)
def transform_weights(w, u):
    """u[4a + b, o, c] = (G w[o, c] G^T)[a, b], in the weight's own precision."""
    o_len, c_len = w.shape[0], w.shape[1]
    for task in prange(o_len * c_len):
        o, c = task // c_len, task % c_len
        for a in range(4):
            # row a of G w[o, c]
            if a == 0:
                r0, r1, r2 = w[o, c, 0, 0], w[o, c, 0, 1], w[o, c, 0, 2]
            elif a == 3:
                r0, r1, r2 = w[o, c, 2, 0], w[o, c, 2, 1], w[o, c, 2, 2]
            else:
                sign = 1.0 if a == 1 else -1.0
                r0 = 0.5 * (w[o, c, 0, 0] + sign * w[o, c, 1, 0] + w[o, c, 2, 0])
                r1 = 0.5 * (w[o, c, 0, 1] + sign * w[o, c, 1, 1] + w[o, c, 2, 1])
                r2 = 0.5 * (w[o, c, 0, 2] + sign * w[o, c, 1, 2] + w[o, c, 2, 2])
            u[4 * a + 0, o, c] = r0
            u[4 * a + 1, o, c] = 0.5 * (r0 + r1 + r2)
            u[4 * a + 2, o, c] = 0.5 * (r0 - r1 + r2)
            u[4 * a + 3, o, c] = r2


@numba.njit(**TASK_JIT)
def _input_transform(xf, c_len, in_h, in_w, pt, pl, row0, th, tw, tb, vf, v0, pad, rows):
    """V for the tb // tw tile rows from row0 (tile rows of all images in a row, th per
    image): vf[v0 + (e * C + c) * tb + t]. The row pass (B^T d) runs along whole padded
    rows, which vectorizes; the column pass reads them at stride 2."""
    width = 2 * tw + 2
    count = tb // tw
    for c in range(c_len):
        for r in range(count):
            n, ty = (row0 + r) // th, (row0 + r) % th
            src = (n * c_len + c) * in_h * in_w
            y0 = 2 * ty - pt
            for i in range(4):  # the four input rows, zero-padded, in pad[i * width:]
                y = y0 + i
                p0 = i * width
                if y < 0 or y >= in_h:
                    for k in range(width):
                        pad[uint64(p0 + k)] = 0
                    continue
                lo, hi = min(pl, width), min(width, pl + in_w)
                for k in range(lo):
                    pad[uint64(p0 + k)] = 0
                s = src + y * in_w - pl
                for k in range(lo, hi):
                    pad[uint64(p0 + k)] = xf[uint64(s + k)]
                for k in range(hi, width):
                    pad[uint64(p0 + k)] = 0
            for k in range(width):  # rows of B^T d
                d0, d1 = pad[uint64(k)], pad[uint64(width + k)]
                d2, d3 = pad[uint64(2 * width + k)], pad[uint64(3 * width + k)]
                rows[uint64(k)] = d0 - d2
                rows[uint64(width + k)] = d1 + d2
                rows[uint64(2 * width + k)] = d2 - d1
                rows[uint64(3 * width + k)] = d1 - d3
            t0 = r * tw
            for a in range(4):  # (B^T d) B, tile by tile
                base = a * width
                e0 = v0 + ((4 * a) * c_len + c) * tb + t0
                step = c_len * tb
                for tx in range(tw):
                    q = base + 2 * tx
                    r0, r1 = rows[uint64(q)], rows[uint64(q + 1)]
                    r2, r3 = rows[uint64(q + 2)], rows[uint64(q + 3)]
                    vf[uint64(e0 + tx)] = r0 - r2
                    vf[uint64(e0 + step + tx)] = r1 + r2
                    vf[uint64(e0 + 2 * step + tx)] = r2 - r1
                    vf[uint64(e0 + 3 * step + tx)] = r1 - r3


@numba.njit(inline="always")
def _four(f, q, step):
    return (f[uint64(q)], f[uint64(q + step)], f[uint64(q + 2 * step)],
            f[uint64(q + 3 * step)])


@numba.njit(**TASK_JIT)
def _output_transform(mf, m0, o_len, tb, row0, th, tw, of, oh_len, ow_len, line):
    """The output rows of the tb // tw tile rows from row0, from M (mf[m0 + (e * O + o) *
    tb + t]) by Y = A^T M A."""
    count = tb // tw
    width = 2 * tw
    step = o_len * tb
    for o in range(o_len):
        for r in range(count):
            t0 = m0 + o * tb + r * tw
            for tx in range(tw):
                q = t0 + tx
                m0_, m1, m2, m3 = _four(mf, q, step)
                m4, m5, m6, m7 = _four(mf, q + 4 * step, step)
                m8, m9, m10, m11 = _four(mf, q + 8 * step, step)
                m12, m13, m14, m15 = _four(mf, q + 12 * step, step)
                # s = A^T M (2 x 4), then Y = s A (2 x 2)
                s00, s01, s02, s03 = m0_ + m4 + m8, m1 + m5 + m9, m2 + m6 + m10, m3 + m7 + m11
                s10, s11 = m4 - m8 - m12, m5 - m9 - m13
                s12, s13 = m6 - m10 - m14, m7 - m11 - m15
                line[uint64(2 * tx)] = s00 + s01 + s02
                line[uint64(2 * tx + 1)] = s01 - s02 - s03
                line[uint64(width + 2 * tx)] = s10 + s11 + s12
                line[uint64(width + 2 * tx + 1)] = s11 - s12 - s13
            n, oy = (row0 + r) // th, 2 * ((row0 + r) % th)
            for i in range(2):
                if oy + i < oh_len:
                    d0 = ((n * o_len + o) * oh_len + oy + i) * ow_len
                    for k in range(ow_len):
                        of[uint64(d0 + k)] = line[uint64(i * width + k)]


if blas.AVAILABLE:
    @numba.njit(**JIT)
    def _winograd(x, u, out, pt, pl, per_block, v, m, scratch):
        """out = conv2d(x, w) for u = transform_weights(w), in blocks of `per_block` tile
        rows (of all images in a row); thread k runs the k-th run of blocks in its own
        slot of v, m and scratch."""
        c_len, in_h, in_w = x.shape[1], x.shape[2], x.shape[3]
        o_len, oh_len, ow_len = out.shape[1], out.shape[2], out.shape[3]
        th, tw = (oh_len + 1) // 2, (ow_len + 1) // 2
        rows = x.shape[0] * th
        blocks = (rows + per_block - 1) // per_block
        slots = v.shape[0]
        per_slot = (blocks + slots - 1) // slots
        cap = per_block * tw
        size = x.itemsize
        double = size == 8
        xf, of = x.reshape(x.size), out.reshape(out.size)
        vf, mf = v.reshape(v.size), m.reshape(m.size)
        width = 2 * tw + 2
        for slot in prange(slots):
            v0, m0 = slot * 16 * c_len * cap, slot * 16 * o_len * cap
            pad, line_rows, line = scratch[slot, :4 * width], scratch[slot, 4 * width:8 * width], \
                scratch[slot, 8 * width:8 * width + 4 * tw]
            for blk in range(slot * per_slot, min(blocks, (slot + 1) * per_slot)):
                row0 = blk * per_block
                tb = (min(rows, row0 + per_block) - row0) * tw
                _input_transform(xf, c_len, in_h, in_w, pt, pl, row0, th, tw, tb, vf, v0, pad,
                                 line_rows)
                for e in range(16):
                    blas.gemm_call(double, False, False, o_len, tb, c_len,
                                   u.ctypes.data + e * o_len * c_len * size, c_len,
                                   v.ctypes.data + (v0 + e * c_len * tb) * size, tb, 0.0,
                                   m.ctypes.data + (m0 + e * o_len * tb) * size, tb)
                _output_transform(mf, m0, o_len, tb, row0, th, tw, of, oh_len, ow_len, line)


# Transformed weights of frozen (read-only) weight arrays, by the array's identity; an
# entry goes when its array does (the weak reference's callback), so an id is never reused.
_TRANSFORMED: dict[int, tuple[weakref.ref, np.ndarray]] = {}
_SCRATCH: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def weight_transform(w: np.ndarray) -> np.ndarray:
    """U = G w G^T as (16, O, C). A read-only weight (a frozen constant) is transformed
    once and kept; a writable one (a parameter in training) at every call."""
    entry = _TRANSFORMED.get(id(w))
    if entry is not None and entry[0]() is w and not recording():  # an artifact needs the
        return entry[1]                                           # transform's kernel too
    u = np.empty((16, w.shape[0], w.shape[1]), w.dtype)
    launch(transform_weights, w, u)
    if not w.flags.writeable:
        key = id(w)
        _TRANSFORMED[key] = (weakref.ref(w, lambda _: _TRANSFORMED.pop(key, None)), u)
    return u


def conv2d_winograd(x: np.ndarray, w: np.ndarray, out: np.ndarray, attrs: dict[str, Any]
                    ) -> None:
    """out = conv2d(x, w) without bias, for a convolution `applies` accepts."""
    n_len, c_len = x.shape[:2]
    o_len = w.shape[0]
    th, tw = tiles(out.shape[2:])
    threads = numba.get_num_threads()
    per_block = block_rows(n_len, out.shape[2:], c_len, x.itemsize, threads)
    cap = per_block * tw
    key = (x.dtype.str, c_len, o_len, cap, tw, threads)
    if key not in _SCRATCH:
        _SCRATCH[key] = (np.empty((threads, 16 * c_len * cap), x.dtype),
                         np.empty((threads, 16 * o_len * cap), x.dtype),
                         np.empty((threads, 8 * (2 * tw + 2) + 4 * tw), x.dtype))
    v, m, scratch = _SCRATCH[key]
    u = weight_transform(w)
    pads = attrs["padding"]
    with blas.one_thread_pool():
        launch(_winograd, x, u, out, pads[0], pads[2], per_block, v, m, scratch)
