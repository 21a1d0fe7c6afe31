"""The weight gradient of a 1x1 stride-1 conv (one group) as direct dot products:

    dW[o, c] = sum over n, p of dy[n, o, p] * x[n, c, p]

A GEMM with m x n the weights and k the pixels. Where the channels are few and the planes
large (MobileNetV2's 16- to 144-channel layers at 112x112 and 56x56), BLAS's GEMM packs
both operands, a pass over each through memory on top of the product's, for weights
that are a few thousand values: the sums are bound by reading dy and x once. Here each
thread sums blocks of 4 x 4 weights as sixteen dot products over a run of pixels: the
eight rows are read in unit stride straight from the planes (LLVM splits each sum into
vector lanes), a run short enough that x's rows stay in cache while every block of dy's
rows passes over them. The runs' sums go into float64 partials, one per thread, added at
the end (the reference sums in float64; BLAS keeps float32 over each image's whole plane).

Large channel counts over small planes go to BLAS: the autotuner measures both
(candidates_grad.py)."""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu.kernels.conv_gemm import workspace
from graphcnn.backends.cpu.registry import JIT, launch

_FAST = dict(JIT, fastmath={"reassoc", "contract"})
BLOCK = 4   # weights per block along each of o and c
# Bytes of x's rows one run covers: with a block of dy's rows, within a core's L2.
RUN_BYTES = 64 * 1024


@numba.njit(inline="always")
def _block(df, xf, a0, b0, p_len, q_len, zero, acc, o0, c0):
    """acc[o0:o0+4, c0:c0+4] += the 4 x 4 dots of dy rows at a0 and x rows at b0 (each
    p_len apart) over q_len pixels."""
    a1, b1 = a0 + uint64(p_len), b0 + uint64(p_len)
    a2, b2 = a1 + uint64(p_len), b1 + uint64(p_len)
    a3, b3 = a2 + uint64(p_len), b2 + uint64(p_len)
    t00 = t01 = t02 = t03 = t10 = t11 = t12 = t13 = zero
    t20 = t21 = t22 = t23 = t30 = t31 = t32 = t33 = zero
    for q in range(q_len):
        u = uint64(q)
        d0, d1, d2, d3 = df[a0 + u], df[a1 + u], df[a2 + u], df[a3 + u]
        e0, e1, e2, e3 = xf[b0 + u], xf[b1 + u], xf[b2 + u], xf[b3 + u]
        t00 += d0 * e0
        t01 += d0 * e1
        t02 += d0 * e2
        t03 += d0 * e3
        t10 += d1 * e0
        t11 += d1 * e1
        t12 += d1 * e2
        t13 += d1 * e3
        t20 += d2 * e0
        t21 += d2 * e1
        t22 += d2 * e2
        t23 += d2 * e3
        t30 += d3 * e0
        t31 += d3 * e1
        t32 += d3 * e2
        t33 += d3 * e3
    acc[o0, c0] += t00
    acc[o0, c0 + 1] += t01
    acc[o0, c0 + 2] += t02
    acc[o0, c0 + 3] += t03
    acc[o0 + 1, c0] += t10
    acc[o0 + 1, c0 + 1] += t11
    acc[o0 + 1, c0 + 2] += t12
    acc[o0 + 1, c0 + 3] += t13
    acc[o0 + 2, c0] += t20
    acc[o0 + 2, c0 + 1] += t21
    acc[o0 + 2, c0 + 2] += t22
    acc[o0 + 2, c0 + 3] += t23
    acc[o0 + 3, c0] += t30
    acc[o0 + 3, c0 + 1] += t31
    acc[o0 + 3, c0 + 2] += t32
    acc[o0 + 3, c0 + 3] += t33


@numba.njit(inline="always")
def _dot(df, xf, a0, b0, q_len, zero):
    t = zero
    for q in range(q_len):
        t += df[a0 + uint64(q)] * xf[b0 + uint64(q)]
    return t


@numba.njit(**_FAST)
def _pointwise_weight_grad(dy, x, partials, image_parts, row_parts, run):
    """partials[i] (O, C), float64, zeroed: image part i's sums. Task (i, j) takes image
    part i and the j-th share of the blocks of dy's rows, so at batch 1 both threads work."""
    n_len, o_len, p_len = dy.shape
    c_len = x.shape[1]
    df, xf = dy.reshape(dy.size), x.reshape(x.size)
    zero = np.zeros(1, dy.dtype)[0]
    o_blocks, c_full = o_len // BLOCK, c_len // BLOCK * BLOCK
    for task in prange(image_parts * row_parts):
        part, share = task // row_parts, task % row_parts
        acc = partials[part]
        lo, hi = part * n_len // image_parts, (part + 1) * n_len // image_parts
        # Row blocks [b_lo, b_hi); the last share also takes the rows past the last block.
        b_lo = share * o_blocks // row_parts
        b_hi = (share + 1) * o_blocks // row_parts
        o_end = b_hi * BLOCK if share < row_parts - 1 else o_len
        for n in range(lo, hi):
            for p0 in range(0, p_len, run):
                q_len = min(run, p_len - p0)
                for ob in range(b_lo, b_hi):
                    o0 = ob * BLOCK
                    a0 = uint64((n * o_len + o0) * p_len + p0)
                    for c0 in range(0, c_full, BLOCK):
                        b0 = uint64((n * c_len + c0) * p_len + p0)
                        _block(df, xf, a0, b0, p_len, q_len, zero, acc, o0, c0)
                    for c in range(c_full, c_len):   # channels past the last whole block
                        b0 = uint64((n * c_len + c) * p_len + p0)
                        for i in range(BLOCK):
                            acc[o0 + i, c] += _dot(df, xf, a0 + uint64(i * p_len), b0,
                                                   q_len, zero)
                for o in range(b_hi * BLOCK, o_end):   # rows past the last whole block
                    a0 = uint64((n * o_len + o) * p_len + p0)
                    for c in range(c_len):
                        b0 = uint64((n * c_len + c) * p_len + p0)
                        acc[o, c] += _dot(df, xf, a0, b0, q_len, zero)


def applies(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, Any],
            dtype: np.dtype) -> bool:
    """A 1x1 stride-1 unpadded conv of one group, in float32 or float64."""
    from graphcnn.ops.conv_shapes import is_pointwise
    return (is_pointwise(w_shape, attrs) and attrs["groups"] == 1
            and np.dtype(dtype) in (np.float32, np.float64))


def parts(n_len: int, threads: int) -> tuple[int, int]:
    """(image parts, row shares): the images split over the threads, and where there are
    fewer images than threads, each image's rows of dy too."""
    image_parts = max(1, min(threads, n_len))
    return image_parts, max(1, threads // image_parts)


def run_length(c_len: int, itemsize: int) -> int:
    """Pixels per run: x's C rows of it within RUN_BYTES, in whole vectors of 16."""
    return max(16, RUN_BYTES // max(1, c_len * itemsize) // 16 * 16)


def scratch(n_len: int, o_len: int, c_len: int) -> dict[str, int]:
    """The workspace one call takes (role -> bytes): the float64 partials."""
    image_parts, _ = parts(n_len, numba.get_num_threads())
    return {"pointwise partials": image_parts * o_len * c_len * 8}


def conv2d_weight_grad_pointwise(dy: np.ndarray, x: np.ndarray, dw_out: np.ndarray,
                                 attrs: dict[str, Any]) -> None:
    """dw_out (O, C, 1, 1) = the weight gradient of a 1x1 stride-1 conv (see applies)."""
    n_len, o_len, c_len = dy.shape[0], dy.shape[1], x.shape[1]
    p_len = int(np.prod(dy.shape[2:]))
    image_parts, row_parts = parts(n_len, numba.get_num_threads())
    partials = workspace("pointwise partials", (image_parts, o_len, c_len), np.float64)
    partials[...] = 0.0
    launch(_pointwise_weight_grad, np.ascontiguousarray(dy).reshape(n_len, o_len, p_len),
           np.ascontiguousarray(x).reshape(n_len, c_len, p_len), partials, image_parts,
           row_parts, run_length(c_len, x.itemsize))
    dw_out.reshape(o_len, c_len)[...] = partials.sum(axis=0)
