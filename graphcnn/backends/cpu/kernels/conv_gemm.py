"""Convolution as GEMM: im2col (a parallel Numba gather) + the BLAS SGEMM behind numpy's
matmul, per image and group; 1x1 stride-1 convolutions need no im2col at all.

    forward        out[n, g]  = W[g] (Og, K)   @ col(x[n, g]) (K, P)
    weight grad    dW[g]     += dy[n, g] (Og, P) @ col(x[n, g]).T
    input grad     dx[n, g]   = col2im( W[g].T (K, Og) @ dy[n, g] (Og, P) )

with K = C/groups * kH * kW and P = OH * OW. The direct kernels in conv.py stay for the
small and the grouped/depthwise cases, where a GEMM has too little work per call;
`use_gemm` is the cost model that picks. Bias and fused epilogues run afterwards, in the
generated epilogue kernel (backends/cpu/kernels/fused.py), while the output is in cache.
"""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange

from graphcnn.backends.cpu.kernels.window import col_range as _col_range
from graphcnn.backends.cpu.registry import JIT

# Below this much work per GEMM call (K * P * Og multiply-adds), the direct kernel wins.
MIN_GEMM_WORK = 32_768


def use_gemm(x_shape: tuple[int, ...], w_shape: tuple[int, ...], out_hw: tuple[int, int],
             attrs: dict[str, Any]) -> bool:
    out_c, per_group, kh, kw = w_shape
    og = out_c // attrs["groups"]
    k = per_group * kh * kw
    return og >= 8 and k >= 16 and k * og * out_hw[0] * out_hw[1] >= MIN_GEMM_WORK


def is_pointwise(w_shape: tuple[int, ...], attrs: dict[str, Any]) -> bool:
    return (w_shape[2:] == (1, 1) and attrs["stride"] == (1, 1)
            and attrs["padding"] == (0, 0, 0, 0))


@numba.njit(**JIT)
def _im2col(x, n, c0, col, kh, kw, sh, sw, pt, pl, dh, dw, oh_len, ow_len):
    """col[(ci, i, j), (oy, ox)] = x[n, c0 + ci, oy*sh - pt + i*dh, ox*sw - pl + j*dw]."""
    in_h, in_w = x.shape[2], x.shape[3]
    taps = kh * kw
    for row in prange(col.shape[0]):
        ci, tap = row // taps, row % taps
        i, j = tap // kw, tap % kw
        off_x = j * dw - pl
        lo, hi = _col_range(off_x, sw, in_w, ow_len)
        for oy in range(oh_len):
            iy = oy * sh - pt + i * dh
            base = oy * ow_len
            if iy < 0 or iy >= in_h:
                for ox in range(ow_len):
                    col[row, base + ox] = 0
                continue
            for ox in range(lo):
                col[row, base + ox] = 0
            for ox in range(lo, hi):
                col[row, base + ox] = x[n, c0 + ci, iy, ox * sw + off_x]
            for ox in range(hi, ow_len):
                col[row, base + ox] = 0


@numba.njit(**JIT)
def _col2im(col, dx, n, c0, cg, kh, kw, sh, sw, pt, pl, dh, dw, oh_len, ow_len):
    """The adjoint of _im2col: dx[n, c0:c0+cg] = sum of col's entries where they came from.
    Parallel over channels, so no two threads add into one element."""
    in_h, in_w = dx.shape[2], dx.shape[3]
    for ci in prange(cg):
        c = c0 + ci
        for y in range(in_h):
            for xx in range(in_w):
                dx[n, c, y, xx] = 0
        for i in range(kh):
            for j in range(kw):
                row = (ci * kh + i) * kw + j
                off_x = j * dw - pl
                lo, hi = _col_range(off_x, sw, in_w, ow_len)
                for oy in range(oh_len):
                    iy = oy * sh - pt + i * dh
                    if iy < 0 or iy >= in_h:
                        continue
                    base = oy * ow_len
                    for ox in range(lo, hi):
                        dx[n, c, iy, ox * sw + off_x] += col[row, base + ox]


_WORKSPACES: dict[tuple[tuple[int, ...], str], np.ndarray] = {}


def workspace(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A scratch buffer reused by every call with this shape (kernels run one at a time)."""
    key = (shape, np.dtype(dtype).str)
    if key not in _WORKSPACES:
        _WORKSPACES[key] = np.empty(shape, dtype)
    return _WORKSPACES[key]


def _geometry(attrs: dict[str, Any]) -> tuple[int, ...]:
    (sh, sw), pads, (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    return (sh, sw, pads[0], pads[2], dh, dw)


def conv2d_gemm(x: np.ndarray, w: np.ndarray, out: np.ndarray, attrs: dict[str, Any]) -> None:
    """out = conv2d(x, w) without bias."""
    n_len, c_len = x.shape[:2]
    out_c, cg, kh, kw = w.shape
    groups = attrs["groups"]
    og, (oh, ow) = out_c // groups, out.shape[2:]
    k, p = cg * kh * kw, oh * ow
    w2 = w.reshape(out_c, k)
    pointwise = is_pointwise(w.shape, attrs)
    col = None if pointwise else workspace((k, p), x.dtype)
    for n in range(n_len):
        for g in range(groups):
            if pointwise:
                src = x[n, g * cg:(g + 1) * cg].reshape(cg, p)
            else:
                _im2col(x, n, g * cg, col, kh, kw, *_geometry(attrs), oh, ow)
                src = col
            np.matmul(w2[g * og:(g + 1) * og], src, out=out[n, g * og:(g + 1) * og].reshape(og, p))


def conv2d_weight_grad_gemm(dy: np.ndarray, x: np.ndarray, dw_out: np.ndarray,
                            attrs: dict[str, Any]) -> None:
    n_len = x.shape[0]
    out_c, cg, kh, kw = dw_out.shape
    groups = attrs["groups"]
    og, (oh, ow) = out_c // groups, dy.shape[2:]
    k, p = cg * kh * kw, oh * ow
    dw2 = dw_out.reshape(out_c, k)
    pointwise = is_pointwise(dw_out.shape, attrs)
    col = None if pointwise else workspace((k, p), x.dtype)
    part = workspace((og, k), x.dtype)
    for g in range(groups):
        target = dw2[g * og:(g + 1) * og]
        for n in range(n_len):
            if pointwise:
                src = x[n, g * cg:(g + 1) * cg].reshape(cg, p)
            else:
                _im2col(x, n, g * cg, col, kh, kw, *_geometry(attrs), oh, ow)
                src = col
            lhs = dy[n, g * og:(g + 1) * og].reshape(og, p)
            if n == 0:
                np.matmul(lhs, src.T, out=target)
            else:
                np.matmul(lhs, src.T, out=part)
                target += part


def conv2d_input_grad_gemm(dy: np.ndarray, w: np.ndarray, dx: np.ndarray,
                           attrs: dict[str, Any]) -> None:
    n_len = dx.shape[0]
    out_c, cg, kh, kw = w.shape
    groups = attrs["groups"]
    og, (oh, ow) = out_c // groups, dy.shape[2:]
    k, p = cg * kh * kw, oh * ow
    w2 = w.reshape(out_c, k)
    pointwise = is_pointwise(w.shape, attrs)
    col = None if pointwise else workspace((k, p), dy.dtype)
    for n in range(n_len):
        for g in range(groups):
            rhs = dy[n, g * og:(g + 1) * og].reshape(og, p)
            if pointwise:
                np.matmul(w2[g * og:(g + 1) * og].T, rhs,
                          out=dx[n, g * cg:(g + 1) * cg].reshape(cg, p))
            else:
                np.matmul(w2[g * og:(g + 1) * og].T, rhs, out=col)
                _col2im(col, dx, n, g * cg, cg, kh, kw, *_geometry(attrs), oh, ow)


@numba.njit(**JIT)
def add_channel_bias(out, bias):
    """out[n, c] += bias[c], in place."""
    c_len = out.shape[1]
    for task in prange(out.shape[0] * c_len):
        n, c = task // c_len, task % c_len
        b = bias[c]
        for y in range(out.shape[2]):
            for x in range(out.shape[3]):
                out[n, c, y, x] += b
