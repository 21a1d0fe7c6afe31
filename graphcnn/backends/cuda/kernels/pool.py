"""Pooling with the reference's PyTorch semantics (graphcnn/ops/pool.py): a thread per
output element forward (with the fused epilogue), and gradients as *gathers* (a thread per
input element summing, in the order the cpu kernels scatter, the output gradients whose
window picked it), so no atomics and deterministic sums. The window geometry tuple is
(C, H, W, OH, OW, KH, KW, SH, SW, PH, PW, DH, DW)."""
from __future__ import annotations

import math
from typing import Any

from numba import types

from graphcnn.backends.cuda.codegen import record_epilogue_examples, specialized, unfused
from graphcnn.backends.cuda.device import numba_cuda
from graphcnn.backends.cuda.kernels.gemm import _numba_dtype
from graphcnn.backends.cuda.registry import (
    Launch,
    c_arrays,
    cuda_kernel,
    device_function,
    dmax,
    dmin,
    flat,
    launch_1d,
    nchw,
)

cu = numba_cuda()
i8 = types.int64
f8 = types.float64


@device_function
def argmax_in_window(x, n, c, oy, ox, geo):
    """(row, col) of the first maximum of one window, or of its last NaN (PyTorch's rule,
    the reference's; row -1: no input in it)."""
    by = -1
    bx = -1
    best = x[n, c, 0, 0]
    for i in range(geo[5]):
        iy = oy * geo[7] - geo[9] + i * geo[11]
        if iy >= 0 and iy < geo[1]:
            for j in range(geo[6]):
                ix = ox * geo[8] - geo[10] + j * geo[12]
                if ix >= 0 and ix < geo[2]:
                    v = x[n, c, iy, ix]
                    if by < 0 or v > best or v != v:
                        best = v
                        by = iy
                        bx = ix
    return by, bx


@device_function
def avg_window(start, k, size, pad, include_pad):
    end = dmin(start + k, size + pad)
    count = end - start
    first = dmax(start, 0)
    stop = dmin(end, size)
    if not include_pad:
        count = stop - first
    return first, stop, count


def make_max_pool(epi: Any) -> Any:
    def max_pool(x, out, geo, sides, egeo):
        i = cu.grid(1)
        while i < out.size:
            n, c, oy, ox = nchw(i, geo[0], geo[3], geo[4])
            by, bx = argmax_in_window(x, n, c, oy, ox, geo)
            v = x[n, c, by, bx] if by >= 0 else -math.inf
            out[i] = epi(v, i, sides, egeo)
            i += cu.gridsize(1)
    return cu.jit(max_pool)


def make_avg_pool(epi: Any, dtype: Any) -> Any:
    def avg_pool(x, out, geo, include_pad, sides, egeo):
        i = cu.grid(1)
        while i < out.size:
            n, c, oy, ox = nchw(i, geo[0], geo[3], geo[4])
            y0, y1, cy = avg_window(oy * geo[7] - geo[9], geo[5], geo[1], geo[9], include_pad)
            x0, x1, cx = avg_window(ox * geo[8] - geo[10], geo[6], geo[2], geo[10], include_pad)
            total = 0.0
            for iy in range(y0, y1):
                for ix in range(x0, x1):
                    total += f8(x[n, c, iy, ix])  # float64 in the simulator too
            out[i] = epi(total / (cy * cx), i, sides, egeo)
            i += cu.gridsize(1)
    return cu.jit(avg_pool)


def make_max_pool_grad(epi: Any, dtype: Any) -> Any:
    def max_pool_grad(dy, x, dx, geo, sides, egeo):
        i = cu.grid(1)
        while i < dx.size:
            n, c, y, xx = nchw(i, geo[0], geo[1], geo[2])
            acc = dtype(0)
            # windows oy with oy*SH - PH <= y <= oy*SH - PH + (KH-1)*DH
            oy_lo = dmax(0, (y + geo[9] - (geo[5] - 1) * geo[11] + geo[7] - 1) // geo[7])
            oy_hi = dmin(geo[3] - 1, (y + geo[9]) // geo[7])
            ox_lo = dmax(0, (xx + geo[10] - (geo[6] - 1) * geo[12] + geo[8] - 1) // geo[8])
            ox_hi = dmin(geo[4] - 1, (xx + geo[10]) // geo[8])
            for oy in range(oy_lo, oy_hi + 1):
                for ox in range(ox_lo, ox_hi + 1):
                    by, bx = argmax_in_window(x, n, c, oy, ox, geo)
                    if by == y and bx == xx:
                        acc += dy[n, c, oy, ox]
            dx[i] = epi(acc, i, sides, egeo)
            i += cu.gridsize(1)
    return cu.jit(max_pool_grad)


def make_avg_pool_grad(epi: Any, dtype: Any) -> Any:
    def avg_pool_grad(dy, dx, geo, include_pad, sides, egeo):
        i = cu.grid(1)
        while i < dx.size:
            n, c, y, xx = nchw(i, geo[0], geo[1], geo[2])
            acc = dtype(0)
            oy_lo = dmax(0, (y + geo[9] - geo[5] + geo[7]) // geo[7])
            oy_hi = dmin(geo[3] - 1, (y + geo[9]) // geo[7])
            ox_lo = dmax(0, (xx + geo[10] - geo[6] + geo[8]) // geo[8])
            ox_hi = dmin(geo[4] - 1, (xx + geo[10]) // geo[8])
            for oy in range(oy_lo, oy_hi + 1):
                y0, y1, cy = avg_window(oy * geo[7] - geo[9], geo[5], geo[1], geo[9],
                                        include_pad)
                if y >= y0 and y < y1:
                    for ox in range(ox_lo, ox_hi + 1):
                        x0, x1, cx = avg_window(ox * geo[8] - geo[10], geo[6], geo[2],
                                                geo[10], include_pad)
                        if xx >= x0 and xx < x1:
                            acc += dy[n, c, oy, ox] / (cy * cx)
            dx[i] = epi(acc, i, sides, egeo)
            i += cu.gridsize(1)
    return cu.jit(avg_pool_grad)


def geometry(in_shape: tuple[int, ...], out_hw: tuple[int, ...], attrs: dict[str, Any]
             ) -> tuple[int, ...]:
    (kh, kw), (sh, sw), (ph, pw) = attrs["kernel_size"], attrs["stride"], attrs["padding"]
    dh, dw = attrs.get("dilation", (1, 1))
    return (in_shape[1], in_shape[2], in_shape[3], out_hw[0], out_hw[1], kh, kw, sh, sw,
            ph, pw, dh, dw)


def plan_max_pool2d(ins: list[Any], out: Any, attrs: dict[str, Any], epilogue: tuple
                    ) -> list[Launch]:
    _, epi, sides, egeo = epilogue
    kernel = specialized(make_max_pool, epi)
    return [launch_1d(kernel, out.size, ins[0], flat(out),
                      geometry(ins[0].shape, out.shape[2:], attrs), sides, egeo)]


def plan_avg_pool2d(ins: list[Any], out: Any, attrs: dict[str, Any], epilogue: tuple
                    ) -> list[Launch]:
    _, epi, sides, egeo = epilogue
    kernel = specialized(make_avg_pool, epi, _numba_dtype(out.dtype))
    return [launch_1d(kernel, out.size, ins[0], flat(out),
                      geometry(ins[0].shape, out.shape[2:], attrs),
                      bool(attrs["count_include_pad"]), sides, egeo)]


def plan_max_pool2d_grad(ins: list[Any], out: Any, attrs: dict[str, Any], epilogue: tuple
                         ) -> list[Launch]:
    dy, x = ins
    _, epi, sides, egeo = epilogue
    kernel = specialized(make_max_pool_grad, epi, _numba_dtype(out.dtype))
    return [launch_1d(kernel, out.size, dy, x, flat(out),
                      geometry(x.shape, dy.shape[2:], attrs), sides, egeo)]


def plan_avg_pool2d_grad(ins: list[Any], out: Any, attrs: dict[str, Any], epilogue: tuple
                         ) -> list[Launch]:
    dy = ins[0]
    _, epi, sides, egeo = epilogue
    kernel = specialized(make_avg_pool_grad, epi, _numba_dtype(out.dtype))
    return [launch_1d(kernel, out.size, dy, flat(out), geometry(out.shape, dy.shape[2:], attrs),
                      bool(attrs["count_include_pad"]), sides, egeo)]


cuda_kernel("max_pool2d")(unfused(plan_max_pool2d))
cuda_kernel("avg_pool2d")(unfused(plan_avg_pool2d))
cuda_kernel("max_pool2d_grad")(unfused(plan_max_pool2d_grad))
cuda_kernel("avg_pool2d_grad")(unfused(plan_avg_pool2d_grad))


def _ptx_examples() -> None:
    geo, b1 = types.UniTuple(i8, 13), types.boolean
    record_epilogue_examples("pool", {
        "max": lambda epi, f: (make_max_pool(epi), c_arrays(f, 4, 1) + (geo,)),
        "avg": lambda epi, f: (make_avg_pool(epi, f), c_arrays(f, 4, 1) + (geo, b1)),
        "max_grad": lambda epi, f: (make_max_pool_grad(epi, f), c_arrays(f, 4, 4, 1) + (geo,)),
        "avg_grad": lambda epi, f: (make_avg_pool_grad(epi, f), c_arrays(f, 4, 1) + (geo, b1)),
    })


_ptx_examples()
