"""The tiled GEMM every convolution and dense op runs on (an implicit GEMM: the operand
tiles are gathered from the tensors as they are, no im2col buffer).

    C[m, col] = sum_k A[m, k] * B[k, col]        (per group g = blockIdx.z)

A block of 16 x 16 threads computes a 64 x 64 tile of C, each thread a 4 x 4 register
tile (rows ty + 16 a, columns tx + 16 b: coalesced stores along the columns); the K axis
advances 8 at a time through shared memory (A tile stored k-major, padded against bank
conflicts). What A, B and C *are* is given by three device functions per op (`load_a`,
`load_b`, `out_index`) over a geometry tuple, so conv2d, its two gradients and
matmul/linear share this one kernel body. The fused epilogue (codegen.py) runs on each
value before its store; a bias is added per row (conv: per output channel) or per column
(linear). Split-K (grid z = groups x splits) writes partial tiles to a scratch array that
a second kernel sums in a fixed order, so results stay deterministic.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import types

from graphcnn.backends.cuda.device import multiprocessors, numba_cuda
from graphcnn.backends.cuda.registry import (dmax, dmin, PTX_EXAMPLES, Launch, dummy, flat,
                                             launch_1d, scratch)

BM = BN = 64
BK = 8
BM_PAD = BM + 1  # the A tile's row length (a literal: shared array shapes must be constants)
TX = TY = 16
RM = RN = 4
LOADS = BM * BK // (TX * TY)   # A (and B) elements each thread stages per K step
SPLIT_K_MIN = 4096             # K per split at least this long (tests lower it)
NO_BIAS, ROW_BIAS, COL_BIAS = 0, 1, 2
cu = numba_cuda()  # a module global: the simulator swaps it for its per-thread stand-in


def make_gemm(load_a: Any, load_b: Any, out_index: Any, bias_mode: int, epi: Any,
              dtype: Any) -> Any:
    def gemm(A, B, C, bias, M, NC, K, splits, k_chunk, geo, sides, egeo, partial):
        As = cu.shared.array((BK, BM_PAD), dtype)
        Bs = cu.shared.array((BK, BN), dtype)
        acc = cu.local.array((RM, RN), dtype)
        ra = cu.local.array(RM, dtype)
        rb = cu.local.array(RN, dtype)
        tx = cu.threadIdx.x
        ty = cu.threadIdx.y
        tid = ty * TX + tx
        m0 = cu.blockIdx.y * BM
        n0 = cu.blockIdx.x * BN
        g = cu.blockIdx.z // splits
        split = cu.blockIdx.z % splits
        k_begin = split * k_chunk
        k_end = dmin(K, k_begin + k_chunk)
        for a in range(RM):
            for b in range(RN):
                acc[a, b] = 0
        for k0 in range(k_begin, k_end, BK):
            for r in range(LOADS):
                e = tid + r * TX * TY
                mm = e // BK
                kk = e % BK
                if m0 + mm < M and k0 + kk < k_end:
                    load_a(A, g, m0 + mm, k0 + kk, geo, As, kk, mm)
                else:
                    As[kk, mm] = 0
                kk = e // BN
                nn = e % BN
                if n0 + nn < NC and k0 + kk < k_end:
                    load_b(B, g, k0 + kk, n0 + nn, geo, Bs, kk, nn)
                else:
                    Bs[kk, nn] = 0
            cu.syncthreads()
            for kk in range(BK):
                for a in range(RM):
                    ra[a] = As[kk, ty + a * TY]
                for b in range(RN):
                    rb[b] = Bs[kk, tx + b * TX]
                for a in range(RM):
                    for b in range(RN):
                        acc[a, b] += ra[a] * rb[b]
            cu.syncthreads()
        for a in range(RM):
            m = m0 + ty + a * TY
            if m < M:
                for b in range(RN):
                    col = n0 + tx + b * TX
                    if col < NC:
                        idx = out_index(g, m, col, geo)
                        if splits > 1:
                            partial[split * C.size + idx] = acc[a, b]
                        else:
                            v = acc[a, b]
                            if bias_mode == ROW_BIAS:
                                v += bias[g * M + m]
                            elif bias_mode == COL_BIAS:
                                v += bias[col]
                            C[idx] = epi(v, idx, sides, egeo)

    return cu.jit(gemm)


def make_split_sum(epi: Any) -> Any:
    def split_sum(partial, C, splits, sides, egeo):
        i = cu.grid(1)
        step = cu.gridsize(1)
        n = C.size
        while i < n:
            v = partial[i]
            for s in range(1, splits):
                v += partial[s * n + i]
            C[i] = epi(v, i, sides, egeo)
            i += step

    return cu.jit(split_sum)


def plan_gemm(loaders: tuple[Any, Any, Any], A: Any, B: Any, out: Any, bias: Any,
              bias_mode: int, M: int, NC: int, K: int, groups: int, geo: tuple,
              epilogue: tuple, allow_split: bool = True) -> list[Launch]:
    """The launches of C = A @ B (+ bias) with the epilogue, per group."""
    from graphcnn.backends.cuda.codegen import specialized
    _, epi, sides, egeo = epilogue
    dtype = _numba_dtype(out.dtype)
    kernel = specialized(make_gemm, *loaders, bias_mode, epi, dtype)
    tiles = math.ceil(NC / BN) * math.ceil(M / BM) * groups
    splits = 1
    if allow_split and bias_mode == NO_BIAS and K >= 2 * SPLIT_K_MIN:
        splits = max(1, min(K // SPLIT_K_MIN, math.ceil(2 * multiprocessors() / tiles), 64))
    k_chunk = math.ceil(K / splits / BK) * BK if splits > 1 else max(K, 1)
    splits = math.ceil(K / k_chunk) if splits > 1 else 1
    C = flat(out)
    bias = flat(bias) if bias is not None else dummy(out.dtype)
    grid = (math.ceil(NC / BN), math.ceil(M / BM), groups * splits)
    partial = scratch(splits * C.size, out.dtype) if splits > 1 else dummy(out.dtype)
    launches = [Launch(kernel[grid, (TX, TY)], (A, B, C, bias, M, NC, K, splits, k_chunk,
                                                 tuple(geo), sides, egeo, partial))]
    if splits > 1:
        reduce = specialized(make_split_sum, epi)
        launches.append(launch_1d(reduce, C.size, partial, C, splits, sides, egeo))
    return launches


def _numba_dtype(dtype: Any) -> Any:
    return types.float64 if np.dtype(dtype) == np.float64 else types.float32


def register_ptx_example(name: str, loaders: tuple[Any, Any, Any], bias_mode: int,
                         a_ndim: int, b_ndim: int, ngeo: int) -> None:
    """A GEMM instance (identity epilogue) for the PTX test."""
    def build(f: Any) -> tuple[Any, tuple]:
        from graphcnn.backends.cuda.codegen import epilogue
        _, epi = epilogue()
        kernel = make_gemm(*loaders, bias_mode, epi, f)
        arr = lambda nd: types.Array(f, nd, "C")  # noqa: E731
        sig = (arr(a_ndim), arr(b_ndim), arr(1), arr(1), types.int64, types.int64,
               types.int64, types.int64, types.int64, types.UniTuple(types.int64, ngeo),
               types.UniTuple(arr(1), 1), types.UniTuple(types.int64, 3), arr(1))
        return kernel.py_func, sig
    PTX_EXAMPLES[name] = build


def _ptx_split_sum(f: Any) -> tuple:
    from graphcnn.backends.cuda.codegen import epilogue
    _, epi = epilogue()
    arr = types.Array(f, 1, "C")
    return make_split_sum(epi).py_func, (arr, arr, types.int64, types.UniTuple(arr, 1),
                                         types.UniTuple(types.int64, 3))


PTX_EXAMPLES["gemm split-K sum"] = _ptx_split_sum
