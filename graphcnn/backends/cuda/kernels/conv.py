"""conv2d and its two gradients as implicit GEMMs on the shared tiled kernel (gemm.py),
and direct kernels for depthwise convolution (groups == in channels == out channels),
where a GEMM would have one row per group.

    conv2d              C[o, (n,oy,ox)]  = sum_(ci,i,j) w[o,ci,i,j] x[n,c,iy,ix]
    conv2d_input_grad   C[ci, (n,y,x)]   = sum_(o,i,j)  w[o,ci,i,j] dy[n,o,oy,ox]
    conv2d_weight_grad  C[o, (ci,i,j)]   = sum_(n,oy,ox) dy[n,o,oy,ox] x[n,c,iy,ix]

with iy = oy*sh - pt + i*dh (ix likewise), per group (grid z). The geometry tuple is
(N, C, H, W, O, OH, OW, KH, KW, SH, SW, PT, PL, DH, DW, C/groups, O/groups).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numba import types

from graphcnn.backends.cuda.codegen import record_epilogue_examples, specialized, unfused
from graphcnn.backends.cuda.device import numba_cuda
from graphcnn.backends.cuda.kernels import gemm
from graphcnn.backends.cuda.kernels.reduce import block_sum
from graphcnn.backends.cuda.registry import (
    THREADS,
    Launch,
    c_arrays,
    cuda_kernel,
    device_function,
    dummy,
    flat,
    launch_1d,
    nchw,
    reduction_blocks,
)
from graphcnn.ops.conv_shapes import is_depthwise

cu = numba_cuda()
i8 = types.int64


# ---- the three GEMMs' operands (gemm.Operands) ----------------------------------------------
# Each K axis is decomposed by a table (`k_table`): row k holds
#   [0] the A offset of k, [1] the B offset of k, [2] its y shift, [3] its x shift.
@device_function
def a_from_table(A, base, k, ktab, geo, As, kk, mm):
    As[kk, mm] = A[base + ktab[k, 0]]


@device_function
def gather_x(x, base, y0, x0, ktab, k, geo, Bs, kk, nn):
    """x at (y0, x0) shifted by row k, zero in the padding (forward and weight gradient)."""
    iy = y0 + ktab[k, 2]
    ix = x0 + ktab[k, 3]
    if iy >= 0 and iy < geo[2] and ix >= 0 and ix < geo[3]:
        Bs[kk, nn] = x[base + ktab[k, 1]]
    else:
        Bs[kk, nn] = 0


@device_function
def fwd_a_row(g, m, geo):
    return (g * geo[16] + m) * (geo[15] * geo[7] * geo[8])


@device_function
def fwd_b_col(g, col, geo):
    """Output pixel col = (n, oy, ox): the offset of x[n, g * C/groups, oy * sh - pt,
    ox * sw - pl] (outside x where it starts in the padding) and that origin."""
    S = geo[5] * geo[6]
    n = col // S
    r = col - n * S
    oy = r // geo[6]
    y0 = oy * geo[9] - geo[11]
    x0 = (r - oy * geo[6]) * geo[10] - geo[12]
    return (n * geo[1] + g * geo[15]) * geo[2] * geo[3] + y0 * geo[3] + x0, y0, x0


@device_function
def fwd_out(g, m, col, geo):
    S = geo[5] * geo[6]
    n = col // S
    return (n * geo[4] + g * geo[16] + m) * S + (col - n * S)


@device_function
def dgrad_a_row(g, m, geo):
    return (g * geo[16] * geo[15] + m) * (geo[7] * geo[8])


@device_function
def dgrad_b_col(g, col, geo):
    """Input pixel col = (n, y, x): the offset of dy[n, g * O/groups] and (y + pt, x + pl),
    from which each tap's output pixel is found."""
    HW = geo[2] * geo[3]
    n = col // HW
    r = col - n * HW
    y = r // geo[3]
    return (n * geo[4] + g * geo[16]) * geo[5] * geo[6], y + geo[11], r - y * geo[3] + geo[12]


@device_function
def dgrad_b_load(dy, base, y0, x0, ktab, k, geo, Bs, kk, nn):
    """dy at the output pixel whose window puts tap k on this input pixel, if any."""
    ty = y0 - ktab[k, 2]
    tx = x0 - ktab[k, 3]
    Bs[kk, nn] = 0
    if ty >= 0 and tx >= 0:
        if geo[9] == 1 and geo[10] == 1:
            oy = ty
            ox = tx
        else:
            oy = ty // geo[9]
            ox = tx // geo[10]
        if oy * geo[9] == ty and ox * geo[10] == tx and oy < geo[5] and ox < geo[6]:
            Bs[kk, nn] = dy[base + ktab[k, 1] + oy * geo[6] + ox]


@device_function
def dgrad_out(g, m, col, geo):
    HW = geo[2] * geo[3]
    n = col // HW
    return (n * geo[1] + g * geo[15] + m) * HW + (col - n * HW)


@device_function
def wgrad_a_row(g, m, geo):
    return (g * geo[16] + m) * (geo[5] * geo[6])


@device_function
def wgrad_b_col(g, col, geo):
    """Filter tap col = (ci, i, j): the offset of x[0, g * C/groups + ci, i * dh - pt,
    j * dw - pl] and that origin."""
    KK = geo[7] * geo[8]
    ci = col // KK
    r = col - ci * KK
    i = r // geo[8]
    y0 = i * geo[13] - geo[11]
    x0 = (r - i * geo[8]) * geo[14] - geo[12]
    return (g * geo[15] + ci) * geo[2] * geo[3] + y0 * geo[3] + x0, y0, x0


@device_function
def wgrad_out(g, m, col, geo):
    return (g * geo[16] + m) * (geo[15] * geo[7] * geo[8]) + col


FWD = gemm.Operands(fwd_a_row, a_from_table, fwd_b_col, gather_x, fwd_out)
DGRAD = gemm.Operands(dgrad_a_row, a_from_table, dgrad_b_col, dgrad_b_load, dgrad_out)
WGRAD = gemm.Operands(wgrad_a_row, a_from_table, wgrad_b_col, gather_x, wgrad_out)
for _name, _ops, _bias in (("fwd", FWD, gemm.ROW_BIAS), ("dgrad", DGRAD, gemm.NO_BIAS),
                           ("wgrad", WGRAD, gemm.NO_BIAS)):
    gemm.register_ptx_example(f"conv2d {_name} gemm", _ops, _bias, 17)


def k_table(which: str, geo: tuple[int, ...]) -> np.ndarray:
    """The (K, 4) offsets of one GEMM's K axis (see the device functions above).

    fwd    k = (ci, i, j):   A = w row,  B = x at  ci, +i*dh, +j*dw
    dgrad  k = (o, i, j):    A = w[o, ., i, j],  B = dy[., o], shifted -i*dh, -j*dw
    wgrad  k = (n, oy, ox):  A = dy[n, ., oy, ox],  B = x[n] at +oy*sh, +ox*sw
    """
    n, c, h, w, o, oh, ow, kh, kw, sh, sw, _, _, dh, dw, cg, og = geo
    if which == "wgrad":
        nn, oy, ox = (a.ravel() for a in np.indices((n, oh, ow), dtype=np.int64))
        return np.stack([nn * o * oh * ow + oy * ow + ox, nn * c * h * w + oy * sh * w + ox * sw,
                         oy * sh, ox * sw], axis=1)
    ch, i, j = (a.ravel() for a in np.indices((og if which == "dgrad" else cg, kh, kw),
                                              dtype=np.int64))
    if which == "dgrad":
        return np.stack([ch * cg * kh * kw + i * kw + j, ch * oh * ow, i * dh, j * dw], axis=1)
    return np.stack([np.arange(ch.size), ch * h * w + i * dh * w + j * dw, i * dh, j * dw],
                    axis=1)


def geometry(x_shape: tuple[int, ...], w_shape: tuple[int, ...], y_shape: tuple[int, ...],
             attrs: dict[str, Any]) -> tuple[int, ...]:
    n, c, h, w = x_shape
    o, cg, kh, kw = w_shape
    (sh, sw), pads, (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    groups = attrs["groups"]
    return (n, c, h, w, o, y_shape[2], y_shape[3], kh, kw, sh, sw, pads[0], pads[2], dh, dw,
            cg, o // groups)


# ---- depthwise ------------------------------------------------------------------------------
def make_depthwise_fwd(epi: Any, dtype: Any, has_bias: bool) -> Any:
    def depthwise_fwd(x, w, bias, out, geo, sides, egeo):
        i = cu.grid(1)
        while i < out.size:
            n, c, oy, ox = nchw(i, geo[1], geo[5], geo[6])
            acc = dtype(0)
            for ki in range(geo[7]):
                iy = oy * geo[9] - geo[11] + ki * geo[13]
                row_in = iy >= 0 and iy < geo[2]
                for kj in range(geo[8]):
                    ix = ox * geo[10] - geo[12] + kj * geo[14]
                    if row_in and ix >= 0 and ix < geo[3]:
                        acc += w[c, 0, ki, kj] * x[n, c, iy, ix]
                    else:  # the zero padding times the weight: NaN for a NaN or Inf weight,
                        acc += w[c, 0, ki, kj] * dtype(0)  # as the reference and PyTorch
            if has_bias:
                acc += bias[c]
            out[i] = epi(acc, i, sides, egeo)
            i += cu.gridsize(1)
    return cu.jit(depthwise_fwd)


def make_depthwise_dgrad(epi: Any, dtype: Any) -> Any:
    def depthwise_dgrad(dy, w, dx, geo, sides, egeo):
        i = cu.grid(1)
        while i < dx.size:
            n, c, y, x = nchw(i, geo[1], geo[2], geo[3])
            acc = dtype(0)
            for ki in range(geo[7]):
                ty = y + geo[11] - ki * geo[13]
                oy = ty // geo[9]
                if ty >= 0 and oy * geo[9] == ty and oy < geo[5]:
                    for kj in range(geo[8]):
                        tx = x + geo[12] - kj * geo[14]
                        ox = tx // geo[10]
                        if tx >= 0 and ox * geo[10] == tx and ox < geo[6]:
                            acc += w[c, 0, ki, kj] * dy[n, c, oy, ox]
            dx[i] = epi(acc, i, sides, egeo)
            i += cu.gridsize(1)
    return cu.jit(depthwise_dgrad)


def make_depthwise_wgrad(epi: Any) -> Any:
    def depthwise_wgrad(dy, x, dw, geo, sides, egeo):
        """One block per filter tap (c, i, j): a float64 sum over (n, oy, ox)."""
        buf = cu.shared.array(THREADS, types.float64)
        tid = cu.threadIdx.x
        KK = geo[7] * geo[8]
        S = geo[5] * geo[6]
        total_len = geo[0] * S
        tap = cu.blockIdx.x
        while tap < dw.size:
            c = tap // KK
            r = tap - c * KK
            ki = r // geo[8]
            kj = r - ki * geo[8]
            total = 0.0
            k = tid
            while k < total_len:
                n = k // S
                r2 = k - n * S
                oy = r2 // geo[6]
                ox = r2 - oy * geo[6]
                iy = oy * geo[9] - geo[11] + ki * geo[13]
                ix = ox * geo[10] - geo[12] + kj * geo[14]
                if iy >= 0 and iy < geo[2] and ix >= 0 and ix < geo[3]:
                    total += dy[n, c, oy, ox] * x[n, c, iy, ix]
                else:  # dy times the zero padding (NaN for a NaN or Inf dy), as the reference
                    total += dy[n, c, oy, ox] * 0.0
                k += THREADS
            total = block_sum(buf, tid, total)
            if tid == 0:
                dw[tap] = epi(total, tap, sides, egeo)
            tap += cu.gridDim.x
    return cu.jit(depthwise_wgrad)


def _ptx_depthwise() -> None:
    geo = types.UniTuple(i8, 17)
    record_epilogue_examples("conv2d depthwise", {
        "fwd": lambda epi, f: (make_depthwise_fwd(epi, f, True),
                               c_arrays(f, 4, 4, 1, 1) + (geo,)),
        "dgrad": lambda epi, f: (make_depthwise_dgrad(epi, f), c_arrays(f, 4, 4, 1) + (geo,)),
        "wgrad": lambda epi, f: (make_depthwise_wgrad(epi), c_arrays(f, 4, 4, 1) + (geo,)),
    })


_ptx_depthwise()


def _float_type(dtype: Any) -> Any:
    return gemm._numba_dtype(dtype)


# ---- plans (also the anchors of fused groups) -----------------------------------------------
def plan_conv2d(ins: list[Any], out: Any, attrs: dict[str, Any], epilogue: tuple
                ) -> list[Launch]:
    x, w = ins[0], ins[1]
    bias = ins[2] if len(ins) == 3 else None
    geo = geometry(x.shape, w.shape, out.shape, attrs)
    _, epi, sides, egeo = epilogue
    if is_depthwise(x.shape[1], w.shape, attrs):
        kernel = specialized(make_depthwise_fwd, epi, _float_type(x.dtype), bias is not None)
        return [launch_1d(kernel, out.size, x, w, bias if bias is not None else dummy(x.dtype),
                          flat(out), geo, sides, egeo)]
    n, groups = x.shape[0], attrs["groups"]
    M, NC, K = geo[16], n * geo[5] * geo[6], geo[15] * geo[7] * geo[8]
    return gemm.plan_gemm(FWD, w, x, out, bias, gemm.ROW_BIAS if bias is not None
                          else gemm.NO_BIAS, M, NC, K, groups, geo, epilogue,
                          gemm.offset_table(k_table("fwd", geo)))


def plan_conv2d_input_grad(ins: list[Any], out: Any, attrs: dict[str, Any], epilogue: tuple
                           ) -> list[Launch]:
    dy, w = ins
    geo = geometry(out.shape, w.shape, dy.shape, attrs)
    _, epi, sides, egeo = epilogue
    if is_depthwise(out.shape[1], w.shape, attrs):
        kernel = specialized(make_depthwise_dgrad, epi, _float_type(dy.dtype))
        return [launch_1d(kernel, out.size, dy, w, flat(out), geo, sides, egeo)]
    M, NC, K = geo[15], out.shape[0] * geo[2] * geo[3], geo[16] * geo[7] * geo[8]
    return gemm.plan_gemm(DGRAD, w, dy, out, None, gemm.NO_BIAS, M, NC, K, attrs["groups"],
                          geo, epilogue, gemm.offset_table(k_table("dgrad", geo)))


def plan_conv2d_weight_grad(ins: list[Any], out: Any, attrs: dict[str, Any], epilogue: tuple
                            ) -> list[Launch]:
    dy, x = ins
    geo = geometry(x.shape, out.shape, dy.shape, attrs)
    _, epi, sides, egeo = epilogue
    if is_depthwise(x.shape[1], out.shape, attrs):
        kernel = specialized(make_depthwise_wgrad, epi)
        blocks = reduction_blocks(out.size)
        return [Launch(kernel, blocks, THREADS, (dy, x, flat(out), geo, sides, egeo))]
    M, NC, K = geo[16], geo[15] * geo[7] * geo[8], x.shape[0] * geo[5] * geo[6]
    return gemm.plan_gemm(WGRAD, dy, x, out, None, gemm.NO_BIAS, M, NC, K, attrs["groups"],
                          geo, epilogue, gemm.offset_table(k_table("wgrad", geo)))


cuda_kernel("conv2d")(unfused(plan_conv2d))
cuda_kernel("conv2d_input_grad")(unfused(plan_conv2d_input_grad))
cuda_kernel("conv2d_weight_grad")(unfused(plan_conv2d_weight_grad))
