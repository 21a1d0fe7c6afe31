"""A conv's weight gradient (one group) as blocked dot products over runs of pixels:

    dW[o, k] = sum over n, p of dy[n, o, p] * col(x)[n, k, p]

with col(x) the im2col columns (k = c, i, j), or for a 1x1 stride-1 conv the image itself.
It is a GEMM with m x n the weights and k the pixels: small and long where the channels
are few and the planes large (the stems' 64 x 147 and 32 x 27 weights over 12544 pixels
an image; MobileNetV2's 1x1 layers of 16 to 144 channels over 112x112 and 56x56 planes).
There the GEMM path pays for passes through memory that the sums do not need: BLAS packs
both operands, and the im2col columns of a whole image (7.4 MB for ResNet's stem) leave
the cache before the GEMM reads them.

Here the pixels of each image are cut into runs, a run's columns are built into a
scratch of the thread's own that stays in its core's cache (a 1x1 conv reads the image in
place), and blocks of 4 x 4 weights are summed as sixteen dot products over the run, the
eight rows read in unit stride (LLVM splits each sum into vector lanes). The runs are
split over the threads, each summing into its own float64 partials, added at the end (the
reference sums in float64; BLAS keeps float32 over an image's whole plane).

Large channel counts over small planes go to BLAS: the autotuner measures both
(candidates_grad.py, algorithm "dots")."""
from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu.kernels.conv_gemm import _geometry, _im2col_block, workspace
from graphcnn.backends.cpu.registry import JIT, launch
from graphcnn.ops.conv_shapes import is_pointwise

_FAST = dict(JIT, fastmath={"reassoc", "contract"})
BLOCK = 4   # weights per block along each of o and k
# Bytes of one run's columns: with the run's rows of dy, within a core's L2.
RUN_BYTES = 256 * 1024
# Where im2col is needed, a weight gradient over more columns than this (C * kH * kW)
# is left to BLAS: the sums read each column once per block of four output channels.
MAX_COLUMNS = 256
# A 1x1 stride-1 conv's columns are its image: the kernel's argument, unread.
_NO_COLUMNS = {np.dtype(np.float32): np.empty(1, np.float32),
               np.dtype(np.float64): np.empty(1, np.float64)}


@numba.njit(inline="always")
def _block(df, a0, sa, xf, b0, sb, q_len, zero, acc, o0, k0):
    """acc[o0:o0+4, k0:k0+4] += the 4 x 4 dots over q_len pixels of df's rows at a0 (sa
    apart) and xf's rows at b0 (sb apart)."""
    a1, b1 = a0 + uint64(sa), b0 + uint64(sb)
    a2, b2 = a1 + uint64(sa), b1 + uint64(sb)
    a3, b3 = a2 + uint64(sa), b2 + uint64(sb)
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
    acc[o0, k0] += t00
    acc[o0, k0 + 1] += t01
    acc[o0, k0 + 2] += t02
    acc[o0, k0 + 3] += t03
    acc[o0 + 1, k0] += t10
    acc[o0 + 1, k0 + 1] += t11
    acc[o0 + 1, k0 + 2] += t12
    acc[o0 + 1, k0 + 3] += t13
    acc[o0 + 2, k0] += t20
    acc[o0 + 2, k0 + 1] += t21
    acc[o0 + 2, k0 + 2] += t22
    acc[o0 + 2, k0 + 3] += t23
    acc[o0 + 3, k0] += t30
    acc[o0 + 3, k0 + 1] += t31
    acc[o0 + 3, k0 + 2] += t32
    acc[o0 + 3, k0 + 3] += t33


@numba.njit(inline="always")
def _dot(df, a0, xf, b0, q_len, zero):
    t = zero
    for q in range(q_len):
        t += df[a0 + uint64(q)] * xf[b0 + uint64(q)]
    return t


@numba.njit(inline="always")
def _run_sums(df, a0, sa, xf, b0, sb, q_len, zero, acc, o_len, k_len):
    """acc (O, K) += the dots of dy's O rows at a0 (sa apart) and the K column rows at b0
    (sb apart) over q_len pixels: whole blocks of 4 x 4, then the rows past them."""
    o_full, k_full = o_len // BLOCK * BLOCK, k_len // BLOCK * BLOCK
    for o0 in range(0, o_full, BLOCK):
        a = a0 + uint64(o0 * sa)
        for k0 in range(0, k_full, BLOCK):
            _block(df, a, sa, xf, b0 + uint64(k0 * sb), sb, q_len, zero, acc, o0, k0)
        for k in range(k_full, k_len):
            for i in range(BLOCK):
                acc[o0 + i, k] += _dot(df, a + uint64(i * sa), xf, b0 + uint64(k * sb),
                                       q_len, zero)
    for o in range(o_full, o_len):
        for k in range(k_len):
            acc[o, k] += _dot(df, a0 + uint64(o * sa), xf, b0 + uint64(k * sb), q_len, zero)


@numba.njit(**_FAST)
def _weight_grad_dots(dy, x, partials, col, run, kh, kw, sh, sw, pt, pl, dh, dw, pointwise):
    """partials[t] (O, K), float64, zeroed: thread t's sums over its share of the runs
    (each image's pixels cut into runs of `run`); col: a scratch of K * run per thread."""
    n_len, o_len, oh_len, ow_len = dy.shape
    c_len, in_h, in_w = x.shape[1], x.shape[2], x.shape[3]
    p_len, k_len = oh_len * ow_len, partials.shape[2]
    threads = partials.shape[0]
    runs = (p_len + run - 1) // run
    units = n_len * runs
    df, xf, cf = dy.reshape(dy.size), x.reshape(x.size), col.reshape(col.size)
    zero = np.zeros(1, dy.dtype)[0]
    for t in prange(threads):
        acc = partials[t]
        for unit in range(t * units // threads, (t + 1) * units // threads):
            n, q0 = unit // runs, unit % runs * run
            q_len = min(run, p_len - q0)
            # The columns: the image's own rows (1x1), or this run's im2col in cf. One call
            # of _run_sums below for both: its inlined blocks are most of the compile time.
            src, b0, sb = xf, n * c_len * p_len + q0, p_len
            if not pointwise:
                src, b0, sb = cf, t * k_len * run, q_len
                _im2col_block(xf, n * c_len * in_h * in_w, in_h, in_w, c_len, kh, kw, sh,
                              sw, pt, pl, dh, dw, ow_len, q0, q0 + q_len, cf, b0)
            _run_sums(df, uint64(n * o_len * p_len + q0), p_len, src, uint64(b0), sb, q_len,
                      zero, acc, o_len, k_len)


def applies(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, Any],
            dtype: np.dtype) -> bool:
    """One group in float32 or float64, and a 1x1 stride-1 conv or at most MAX_COLUMNS
    im2col columns."""
    columns = math.prod(w_shape[1:])
    return (attrs["groups"] == 1 and np.dtype(dtype) in (np.float32, np.float64)
            and (is_pointwise(w_shape, attrs) or columns <= MAX_COLUMNS))


def run_length(k_len: int, itemsize: int) -> int:
    """Pixels per run: its K columns within RUN_BYTES, in whole vectors of 16."""
    return max(16, RUN_BYTES // max(1, k_len * itemsize) // 16 * 16)


def _threads() -> int:
    return max(1, numba.get_num_threads())


def scratch(w_shape: tuple[int, ...], attrs: dict[str, Any], itemsize: int
            ) -> dict[str, int]:
    """The workspaces one call takes (role -> bytes): the float64 partials, and the
    threads' columns where im2col is needed."""
    o_len, k_len = w_shape[0], math.prod(w_shape[1:])
    roles = {"dots partials": _threads() * o_len * k_len * 8}
    if not is_pointwise(w_shape, attrs):
        roles["dots columns"] = _threads() * k_len * run_length(k_len, itemsize) * itemsize
    return roles


def conv2d_weight_grad_dots(dy: np.ndarray, x: np.ndarray, dw_out: np.ndarray,
                            attrs: dict[str, Any]) -> None:
    """dw_out (O, C, kH, kW) = the weight gradient of a one-group conv (see applies)."""
    o_len, k_len = dw_out.shape[0], math.prod(dw_out.shape[1:])
    pointwise = is_pointwise(dw_out.shape, attrs)
    threads = _threads()
    run = run_length(k_len, x.itemsize)
    partials = workspace("dots partials", (threads, o_len, k_len), np.float64)
    partials[...] = 0.0
    col = (_NO_COLUMNS[x.dtype] if pointwise
           else workspace("dots columns", (threads * k_len * run,), x.dtype))
    launch(_weight_grad_dots, np.ascontiguousarray(dy), np.ascontiguousarray(x), partials,
           col, run, *dw_out.shape[2:], *_geometry(attrs), pointwise)
    dw_out.reshape(o_len, k_len)[...] = partials.sum(axis=0)
