"""resize2d and resize2d_grad: both read the per-axis tables of graphcnn.ops.resize (the
source indexes and weights, computed once per shape on the host, as the reference does).

The forward is parallel over (plane, output row): a row blends two input rows. The adjoint
gathers (no atomics, deterministic): parallel over planes, each input pixel sums the
weighted cotangents of the outputs that read it, along W then H as the reference.
"""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange

from graphcnn.backends.cpu.registry import JIT, cpu_kernel, launch
from graphcnn.ops.resize import kernel_inverse_tables, kernel_tables


@numba.njit(**JIT)
def _resize_bilinear(x, out, h0, h1, hl0, hl1, w0, w1, wl0, wl1):
    planes, out_h, out_w = out.shape
    for task in prange(planes * out_h):
        p, oy = task // out_h, task % out_h
        r0, r1, a0, a1 = h0[oy], h1[oy], hl0[oy], hl1[oy]
        for ox in range(out_w):
            c0, c1, b0, b1 = w0[ox], w1[ox], wl0[ox], wl1[ox]
            # every term, even with weight 0 (Inf * 0 is NaN there, as in the reference)
            top = b0 * x[p, r0, c0] + b1 * x[p, r0, c1]
            bottom = b0 * x[p, r1, c0] + b1 * x[p, r1, c1]
            out[p, oy, ox] = a0 * top + a1 * bottom


@numba.njit(**JIT)
def _resize_nearest(x, out, h0, w0):
    planes, out_h, out_w = out.shape
    for task in prange(planes * out_h):
        p, oy = task // out_h, task % out_h
        r = h0[oy]
        for ox in range(out_w):
            out[p, oy, ox] = x[p, r, w0[ox]]


@numba.njit(**JIT)
def _resize_grad(dy, dx, hp, hi, hw, wp, wi, ww, zero):
    planes, in_h, in_w = dx.shape
    out_h = dy.shape[1]
    for p in prange(planes):
        # along W first (each output row to the input's width), then along H: the
        # reference's order, and each row reduced once rather than once per input row
        rows = np.empty((out_h, in_w), dy.dtype)
        for oy in range(out_h):
            for ix in range(in_w):
                acc = zero
                for b in range(wp[ix], wp[ix + 1]):
                    acc += ww[b] * dy[p, oy, wi[b]]
                rows[oy, ix] = acc
        for iy in range(in_h):
            for ix in range(in_w):
                dx[p, iy, ix] = zero
            for a in range(hp[iy], hp[iy + 1]):
                weight, oy = hw[a], hi[a]
                for ix in range(in_w):
                    dx[p, iy, ix] += weight * rows[oy, ix]


def _key(attrs: dict[str, Any]) -> tuple[str, bool, Any]:
    return attrs["mode"], bool(attrs["align_corners"]), attrs["scales"]


@cpu_kernel("resize2d")
def resize2d_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                    attrs: dict[str, Any]) -> None:
    x, out = ins[0], outs[0]
    if out.size == 0:
        return
    n, c, h, w = x.shape
    oh, ow = out.shape[2:]
    th, tw = kernel_tables((h, w), (oh, ow), *_key(attrs), x.dtype.str)
    xs, ys = x.reshape(n * c, h, w), out.reshape(n * c, oh, ow)
    if attrs["mode"] == "nearest":
        launch(_resize_nearest, xs, ys, th.i0, tw.i0)
    else:
        launch(_resize_bilinear, xs, ys, th.i0, th.i1, th.l0, th.l1,
               tw.i0, tw.i1, tw.l0, tw.l1)


@cpu_kernel("resize2d_grad")
def resize2d_grad_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                         attrs: dict[str, Any]) -> None:
    dy, dx = ins[0], outs[0]
    if dx.size == 0:
        return
    n, c, oh, ow = dy.shape
    h, w = dx.shape[2:]
    ih, iw = kernel_inverse_tables((h, w), (oh, ow), *_key(attrs), dy.dtype.str)
    launch(_resize_grad, dy.reshape(n * c, oh, ow), dx.reshape(n * c, h, w),
           ih.ptr, ih.outs, ih.weight, iw.ptr, iw.outs, iw.weight, dy.dtype.type(0))
