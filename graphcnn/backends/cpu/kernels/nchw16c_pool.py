"""max_pool2d_blocked (graphcnn/ops/layout.py): max pooling in NCHW16c.

ResNet's, GoogLeNet's and DenseNet's stems are a 7x7/2 convolution, its relu, and a 3x3/2
max pool. The convolution runs fastest on the blocked kernel (nchw16c_conv.py), whose
output in NCHW took a copy back of the whole 112x112 map (51 MB at batch 16) before the
pool read it again; the layout pass now keeps the pool in the blocked region, so only the
pooled map (a quarter of it) is converted back. Each output pixel is a 16-lane vector
maximum over its window's pixels, which are vectors too.

The rule is max_pool2d's (ops/pool.py): the window's first element, then each one that is
greater or NaN, so a NaN anywhere in a window makes its maximum NaN; padding never wins.
"""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange, types
from numba.extending import intrinsic

from graphcnn.backends.cpu.kernels.vector_ir import F32, LANES, i64, load_vector, store_vector
from graphcnn.backends.cpu.registry import JIT, cpu_kernel, launch
from graphcnn.ops.layout import max_pool2d_blocked_ref


@intrinsic
def take_greater(typingctx, src_addr, dst_addr):
    """dst[l] = src[l] where src[l] > dst[l] or src[l] is NaN, for the 16 lanes l, as one
    vector compare and select (Numba's loop over the lanes stayed scalar: it cannot know
    that src and dst do not overlap)."""
    def codegen(context, builder, signature, args):
        src, dst = (builder.inttoptr(a, F32.as_pointer()) for a in args)
        v, best = load_vector(builder, src, i64(0)), load_vector(builder, dst, i64(0))
        take = builder.or_(builder.fcmp_ordered(">", v, best),
                           builder.fcmp_unordered("uno", v, v))
        store_vector(builder, builder.select(take, v, best), dst, i64(0))
        return context.get_dummy_value()
    return types.void(types.uintp, types.uintp), codegen


@numba.njit(**JIT)
def _max_pool_rows(x, out, kh, kw, sh, sw, ph, pw, dh, dw):
    """out = max_pool2d(x), seen as (N * C/16, H, W * 16) and (N * C/16, OH, OW * 16); a
    task is one output row of a block. The row starts at -inf and takes, tap by tap, each
    input vector's lanes that are greater or NaN: the reference's values (its first
    element, then each greater or NaN; padding is never read), in runs of whole vectors
    along the row (take_greater)."""
    planes, h, w = x.shape[0], x.shape[1], x.shape[2] // LANES
    oh, ow = out.shape[1], out.shape[2] // LANES
    x0, o0 = x.ctypes.data, out.ctypes.data
    for task in prange(planes * oh):
        plane, oy = task // oh, task % oh
        row = out[plane, oy]
        for q in range(ow * LANES):
            row[q] = -np.inf
        dst = o0 + task * ow * LANES * 4   # the row: task = plane * oh + oy
        for i in range(kh):
            iy = oy * sh - ph + i * dh
            if iy < 0 or iy >= h:
                continue
            src = x0 + (plane * h + iy) * w * LANES * 4
            for j in range(kw):
                shift = j * dw - pw   # input column of output column ox: ox * sw + shift
                first = max(0, (sw - 1 - shift) // sw)
                last = min(ow, (w - 1 - shift) // sw + 1)
                for ox in range(first, last):
                    take_greater(src + (ox * sw + shift) * LANES * 4, dst + ox * LANES * 4)


@cpu_kernel("max_pool2d_blocked")
def max_pool2d_blocked_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                              attrs: dict[str, Any]) -> None:
    (kh, kw), (sh, sw), (ph, pw) = attrs["kernel_size"], attrs["stride"], attrs["padding"]
    dh, dw = attrs["dilation"]
    x, out = ins[0], outs[0]
    if x.dtype != np.float32:   # the layout pass makes float32 ones only
        out[...] = max_pool2d_blocked_ref(x, **attrs)
        return
    n, cb, oh, ow, _ = out.shape
    launch(_max_pool_rows, x.reshape(n * cb, x.shape[2], x.shape[3] * LANES),
           out.reshape(n * cb, oh, ow * LANES), kh, kw, sh, sw, ph, pw, dh, dw)
