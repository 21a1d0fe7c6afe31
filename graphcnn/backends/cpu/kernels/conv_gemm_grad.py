"""The convolution gradients as GEMMs (conv_gemm.py has the forward, the im2col and the
workspaces):

    weight grad    dW[g]     += dy[n, g] (Og, P) @ col(x[n, g]).T
    input grad     dx[n, g]   = col2im( W[g].T (K, Og) @ dy[n, g] (Og, P) )

A weight gradient is small and its reduction long, so where each image makes a wide GEMM
the images are split over the threads, each summing its share into its own partial
(_weight_grad_images; a 1x1 stride-1 layer needs no columns: blas.matmul_sum). An
input gradient splits the images too, each thread scattering its image's columns into dx
right after its GEMM, while they are in its core's cache (_input_grad_images); a 1x1
stride-1 layer's goes straight into dx, one thread per image (blas.matmul_batched).
"""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu import blas
from graphcnn.backends.cpu.blas import matmul
from graphcnn.backends.cpu.kernels.conv_gemm import (
    INPUT_GRAD_COLUMNS,
    _gather,
    _geometry,
    _im2col,
    _im2col_block,
    _plan,
    image_split_parts,
    workspace,
)
from graphcnn.backends.cpu.kernels.grad_mask import Mask, mask_after, mask_arguments, mask_plane
from graphcnn.backends.cpu.kernels.window import col_range as _col_range
from graphcnn.backends.cpu.registry import JIT, launch
from graphcnn.ops.conv_shapes import is_full_window, is_pointwise

if blas.AVAILABLE:
    @numba.njit(**JIT)
    def _weight_grad_images(x, dy, g, og, col, dw2, partials, kh, kw, sh, sw, pt, pl, dh, dw,
                            oh_len, ow_len, parts):
        """dw2[g's rows] = sum_n dy[n, g] @ col(x[n, g]).T with the images split into
        `parts` runs, one per thread: each builds one image's columns at a time in its own
        block of `col`, and sums its GEMMs into its own rows (dw2's for the first run, a
        block of `partials` for the others; the caller adds them). A weight gradient is
        small and its reduction long (the stem's 32 x 27 over 12544 pixels an image):
        split by its rows, each thread's GEMM would be too thin to pay for its packing."""
        n_len, c_len, in_h, in_w = x.shape
        o_len, k, p = dy.shape[1], dw2.shape[1], oh_len * ow_len
        cg = k // (kh * kw)
        xf, cf = x.reshape(x.size), col.reshape(col.size)
        size = x.itemsize
        double = size == 8
        for part in prange(parts):
            lo, hi = part * n_len // parts, (part + 1) * n_len // parts
            c0 = part * k * p
            target = dw2.ctypes.data + g * og * k * size
            if part > 0:
                target = partials.ctypes.data + (part - 1) * og * k * size
            for n in range(lo, hi):
                _im2col_block(xf, (n * c_len + g * cg) * in_h * in_w, in_h, in_w, cg, kh, kw,
                              sh, sw, pt, pl, dh, dw, ow_len, 0, p, cf, c0)
                blas.gemm_call(double, False, True, og, k, p,
                               dy.ctypes.data + (n * o_len + g * og) * p * size, p,
                               col.ctypes.data + c0 * size, p, 0.0 if n == lo else 1.0,
                               target, k)


    @numba.njit(**JIT)
    def _pointwise_input_grad_masked(wt, dy, dx, parts, yf, low, high):
        """dx[n] = wt (C, O) @ dy[n] (O, P), then the clip_grad mask over dx[n] while it is
        in this core's cache (grad_mask.py): the images split into `parts` runs, one per
        thread, as blas.matmul_batched's."""
        n_len, c_len, o_len, p = dy.shape[0], wt.shape[0], wt.shape[1], dy.shape[2]
        size = dy.itemsize
        double = size == 8
        dxf = dx.reshape(dx.size)
        for part in prange(parts):
            for n in range(part * n_len // parts, (part + 1) * n_len // parts):
                blas.gemm_call(double, False, False, c_len, p, o_len, wt.ctypes.data, o_len,
                               dy.ctypes.data + n * o_len * p * size, p, 0.0,
                               dx.ctypes.data + n * c_len * p * size, p)
                mask_plane(dxf, yf, n * c_len * p, c_len * p, low, high)


@numba.njit(inline="always")
def _col2im_plane(cf, src0, width, df, dst0, in_h, in_w, kh, kw, sh, sw, pt, pl, dh, dw,
                  oh_len, ow_len):
    """df[dst0:] (one channel's plane) = the sum of the entries of its kh * kw rows of
    columns, row (i, j) at cf[src0 + (i * kw + j) * width + output pixel]."""
    for q in range(in_h * in_w):
        df[uint64(dst0 + q)] = 0
    for i in range(kh):
        ylo, yhi = _col_range(i * dh - pt, sh, in_h, oh_len)
        for j in range(kw):
            off_x = j * dw - pl
            lo, hi = _col_range(off_x, sw, in_w, ow_len)
            row0 = src0 + (i * kw + j) * width
            for oy in range(ylo, yhi):
                d0 = dst0 + (oy * sh - pt + i * dh) * in_w + lo * sw + off_x
                s0 = row0 + oy * ow_len + lo
                if sw == 1:
                    for k in range(hi - lo):
                        df[uint64(d0 + k)] += cf[uint64(s0 + k)]
                else:
                    for k in range(hi - lo):
                        df[uint64(d0 + k * sw)] += cf[uint64(s0 + k)]


@numba.njit(**JIT)
def _col2im(col, dx, n0, nb, c0, cg, kh, kw, sh, sw, pt, pl, dh, dw, oh_len, ow_len):
    """The adjoint of _im2col: dx[n0 + b, c0 + ci] = the sum of col's entries taken from
    there. Parallel over (image, channel), so no two threads add into one element."""
    in_h, in_w = dx.shape[2], dx.shape[3]
    plane, width = oh_len * ow_len, col.shape[1]
    df, cf = dx.reshape(dx.size), col.reshape(col.size)
    for task in prange(nb * cg):
        b, ci = task // cg, task % cg
        _col2im_plane(cf, ci * kh * kw * width + b * plane, width, df,
                      ((n0 + b) * dx.shape[1] + c0 + ci) * in_h * in_w, in_h, in_w,
                      kh, kw, sh, sw, pt, pl, dh, dw, oh_len, ow_len)


if blas.AVAILABLE:
    @numba.njit(**JIT)
    def _input_grad_images(dy, w2, dx, col, kh, kw, sh, sw, pt, pl, dh, dw, parts):
        """dx = col2im(w2.T @ dy[n]) for each image (one group), the images split into
        `parts` runs, one per thread: each thread multiplies one image at a time into its
        own block of `col` and scatters it into dx at once, so the columns never leave
        that core's cache and no thread waits for the other between the two."""
        n_len, o_len, oh_len, ow_len = dy.shape
        c_len, in_h, in_w = dx.shape[1], dx.shape[2], dx.shape[3]
        k, p = w2.shape[1], oh_len * ow_len
        df, cf = dx.reshape(dx.size), col.reshape(col.size)
        size = dy.itemsize
        double = size == 8
        for part in prange(parts):
            c0 = part * k * p
            for n in range(part * n_len // parts, (part + 1) * n_len // parts):
                blas.gemm_call(double, True, False, k, p, o_len, w2.ctypes.data, k,
                               dy.ctypes.data + n * o_len * p * size, p, 0.0,
                               col.ctypes.data + c0 * size, p)
                for ci in range(c_len):
                    _col2im_plane(cf, c0 + ci * kh * kw * p, p, df,
                                  (n * c_len + ci) * in_h * in_w, in_h, in_w, kh, kw, sh, sw,
                                  pt, pl, dh, dw, oh_len, ow_len)


def conv2d_weight_grad_gemm(dy: np.ndarray, x: np.ndarray, dw_out: np.ndarray,
                            attrs: dict[str, Any]) -> None:
    groups, (oh, ow) = attrs["groups"], dy.shape[2:]
    n_len, cg, og, k, p, chunks = _plan(x.shape, dw_out.shape, (oh, ow), groups, x.itemsize)
    dw2 = dw_out.reshape(dw_out.shape[0], k)
    dy3 = dy.reshape(n_len, -1, p)
    if is_full_window(x.shape, dw_out.shape, attrs):  # dw2 (O, K) = dy (N, O).T @ x (N, K)
        matmul(dy.reshape(n_len, -1).T, x.reshape(n_len, k), dw2)
        return
    if is_pointwise(dw_out.shape, attrs):  # dW[g] = sum_n dy[n, g] (Og, P) @ x[n, g].T (P, Cg)
        x3 = x.reshape(n_len, -1, p)
        partials = workspace("partials", (blas.sum_parts(n_len) - 1, og, cg), x.dtype)
        for g in range(groups):
            blas.matmul_sum(dy3[:, g * og:(g + 1) * og],
                            x3[:, g * cg:(g + 1) * cg].transpose(0, 2, 1),
                            dw2[g * og:(g + 1) * og], partials)
        return
    parts = image_split_parts(n_len, k, p, x.itemsize)
    if parts and x.flags.c_contiguous and dy.flags.c_contiguous:
        col = workspace("col", (parts * k * p,), x.dtype)
        partials = workspace("partials", (parts - 1, og, k), x.dtype)
        with blas.one_thread_pool():
            for g in range(groups):
                launch(_weight_grad_images, x, dy, g, og, col, dw2, partials,
                       *dw_out.shape[2:], *_geometry(attrs), oh, ow, parts)
                for part in range(parts - 1):
                    np.add(dw2[g * og:(g + 1) * og], partials[part],
                           out=dw2[g * og:(g + 1) * og])
        return
    for g in range(groups):
        target = dw2[g * og:(g + 1) * og]
        for index, (n0, nb) in enumerate(chunks):
            col = workspace("col", (k, nb * p), x.dtype)
            launch(_im2col, x, n0, nb, g * cg, col, *dw_out.shape[2:], *_geometry(attrs), oh, ow)
            if nb == 1:
                lhs = dy3[n0, g * og:(g + 1) * og]
            else:
                lhs = workspace("rows", (og, nb * p), x.dtype)
                launch(_gather, dy3, lhs, n0, nb, g * og)
            matmul(lhs, col.T, target, accumulate=index > 0)


def masks_as_it_stores(w_shape: tuple[int, ...], attrs: dict[str, Any]) -> bool:
    """Whether conv2d_input_grad_gemm applies a mask image by image (a 1x1 stride-1 conv of
    one group); elsewhere it takes a pass of its own after."""
    return blas.AVAILABLE and is_pointwise(w_shape, attrs) and attrs["groups"] == 1


def conv2d_input_grad_gemm(dy: np.ndarray, w: np.ndarray, dx: np.ndarray,
                           attrs: dict[str, Any], mask: Mask | None = None) -> None:
    """dx = the input gradient; `mask`: a fused clip_grad after it (grad_mask.py)."""
    n_len, threads = dy.shape[0], numba.get_num_threads()
    if (mask is not None and masks_as_it_stores(w.shape, attrs) and n_len >= threads
            and dy.dtype == dx.dtype and dx.dtype in (np.float32, np.float64)
            and dy.flags.c_contiguous and dx.flags.c_contiguous):
        _, y, low, high = mask_arguments(dx, mask)
        p = dy.shape[2] * dy.shape[3]
        wt = np.ascontiguousarray(w.reshape(w.shape[0], -1).T, dx.dtype)
        with blas.one_thread_pool():
            launch(_pointwise_input_grad_masked, wt, dy.reshape(n_len, -1, p), dx, threads,
                   y.reshape(-1), low, high)
        return
    _input_grad(dy, w, dx, attrs)
    mask_after(dx, mask)


def _input_grad(dy: np.ndarray, w: np.ndarray, dx: np.ndarray, attrs: dict[str, Any]) -> None:
    groups, (oh, ow) = attrs["groups"], dy.shape[2:]
    n_len, cg, og, k, p, chunks = _plan(dx.shape, w.shape, (oh, ow), groups, dy.itemsize)
    w2 = w.reshape(w.shape[0], k)
    dy3 = dy.reshape(n_len, -1, p)
    if is_full_window(dx.shape, w.shape, attrs):  # dx (N, K) = dy (N, O) @ w2 (O, K)
        matmul(dy.reshape(n_len, -1), w2, dx.reshape(n_len, k))
        return
    if is_pointwise(w.shape, attrs):  # dx[n, g] (Cg, P) = W[g].T (Cg, Og) @ dy[n, g] (Og, P)
        dx3 = dx.reshape(n_len, -1, p)
        for g in range(groups):
            wt = w2[g * og:(g + 1) * og].T
            blas.matmul_batched(np.broadcast_to(wt, (n_len, *wt.shape)),
                                dy3[:, g * og:(g + 1) * og], dx3[:, g * cg:(g + 1) * cg])
        return
    parts = image_split_parts(n_len, k, p, dy.itemsize, INPUT_GRAD_COLUMNS)
    if parts and groups == 1 and dy.flags.c_contiguous and dx.flags.c_contiguous:
        col = workspace("col", (parts * k * p,), dy.dtype)
        with blas.one_thread_pool():
            launch(_input_grad_images, dy, np.ascontiguousarray(w2), dx, col, *w.shape[2:],
                   *_geometry(attrs), parts)
        return
    for n0, nb in chunks:
        col = workspace("col", (k, nb * p), dy.dtype)
        for g in range(groups):
            if nb == 1:
                rhs = dy3[n0, g * og:(g + 1) * og]
            else:
                rhs = workspace("rows", (og, nb * p), dy.dtype)
                launch(_gather, dy3, rhs, n0, nb, g * og)
            matmul(w2[g * og:(g + 1) * og].T, rhs, col)
            launch(_col2im, col, dx, n0, nb, g * cg, cg, *w.shape[2:], *_geometry(attrs), oh, ow)
