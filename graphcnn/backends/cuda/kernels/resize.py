"""resize2d and resize2d_grad on the device: a thread per output element (forward) or per
input element (the adjoint, a gather over the CSR lists of graphcnn.ops.resize: no
atomics, deterministic). The per-axis tables are computed on the host when the plan is
made, as the reference computes them, and copied to the device once."""
from __future__ import annotations

from typing import Any

import numpy as np
from numba import types

from graphcnn.backends.cuda.device import numba_cuda
from graphcnn.backends.cuda.registry import Launch, cuda_kernel, device_kernel, flat, launch_1d
from graphcnn.ops.resize import kernel_inverse_tables, kernel_tables

cu = numba_cuda()
i8 = types.int64


@device_kernel(lambda f: (f[::1], f[::1], i8, i8, i8, i8, i8[::1], i8[::1], f[::1], f[::1],
                          i8[::1], i8[::1], f[::1], f[::1]))
def _resize_bilinear(x, out, H, W, OH, OW, h0, h1, hl0, hl1, w0, w1, wl0, wl1):
    i = cu.grid(1)
    while i < out.size:
        ox = i % OW
        t = i // OW
        oy = t % OH
        base = (t // OH) * H * W
        r0, r1 = base + h0[oy] * W, base + h1[oy] * W
        c0, c1, b0, b1 = w0[ox], w1[ox], wl0[ox], wl1[ox]
        # every term, even with weight 0 (Inf * 0 is NaN there, as in the reference)
        top = b0 * x[r0 + c0] + b1 * x[r0 + c1]
        bottom = b0 * x[r1 + c0] + b1 * x[r1 + c1]
        out[i] = hl0[oy] * top + hl1[oy] * bottom
        i += cu.gridsize(1)


@device_kernel(lambda f: (f[::1], f[::1], i8, i8, i8, i8, i8[::1], i8[::1]))
def _resize_nearest(x, out, H, W, OH, OW, h0, w0):
    i = cu.grid(1)
    while i < out.size:
        ox = i % OW
        t = i // OW
        oy = t % OH
        out[i] = x[(t // OH) * H * W + h0[oy] * W + w0[ox]]
        i += cu.gridsize(1)


@device_kernel(lambda f: (f[::1], f[::1], i8, i8, i8, i8, i8[::1], i8[::1], f[::1],
                          i8[::1], i8[::1], f[::1], f))
def _resize_grad(dy, dx, H, W, OH, OW, hp, hi, hw, wp, wi, ww, zero):
    i = cu.grid(1)
    while i < dx.size:
        ix = i % W
        t = i // W
        iy = t % H
        base = (t // H) * OH * OW
        acc = zero   # sums in dy's type, as the reference and the cpu kernel
        for a in range(hp[iy], hp[iy + 1]):
            row_base = base + hi[a] * OW
            row = zero
            for b in range(wp[ix], wp[ix + 1]):
                row += ww[b] * dy[row_base + wi[b]]
            acc += hw[a] * row
        dx[i] = acc
        i += cu.gridsize(1)


def _key(attrs: dict[str, Any]) -> tuple[str, bool, Any]:
    return attrs["mode"], bool(attrs["align_corners"]), attrs["scales"]


def _device(*arrays: np.ndarray) -> list[Any]:
    return [cu.to_device(np.ascontiguousarray(a)) for a in arrays]


@cuda_kernel("resize2d")
def resize2d_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    x, out = ins[0], outs[0]
    if out.size == 0:
        return []
    n, c, h, w = x.shape
    oh, ow = out.shape[2:]
    th, tw = kernel_tables((h, w), (oh, ow), *_key(attrs), np.dtype(x.dtype).str)
    if attrs["mode"] == "nearest":
        return [launch_1d(_resize_nearest, out.size, flat(x), flat(out), h, w, oh, ow,
                          *_device(th.i0, tw.i0))]
    return [launch_1d(_resize_bilinear, out.size, flat(x), flat(out), h, w, oh, ow,
                      *_device(th.i0, th.i1, th.l0, th.l1, tw.i0, tw.i1, tw.l0, tw.l1))]


@cuda_kernel("resize2d_grad")
def resize2d_grad_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    dy, dx = ins[0], outs[0]
    if dx.size == 0:
        return []
    oh, ow = dy.shape[2:]
    h, w = dx.shape[2:]
    ih, iw = kernel_inverse_tables((h, w), (oh, ow), *_key(attrs), np.dtype(dy.dtype).str)
    return [launch_1d(_resize_grad, dx.size, flat(dy), flat(dx), h, w, oh, ow,
                      *_device(ih.ptr, ih.outs, ih.weight, iw.ptr, iw.outs, iw.weight),
                      np.dtype(dy.dtype).type(0))]
