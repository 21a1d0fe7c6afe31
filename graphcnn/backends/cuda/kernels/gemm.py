"""The tiled GEMM every convolution and dense op runs on (an implicit GEMM: the operand
tiles are gathered from the tensors as they are, no im2col buffer).

    C[m, col] = sum_k A[m, k] * B[k, col]        (per group g = blockIdx.z)

A block of 16 x 16 threads computes a 64 x 64 tile of C, each thread a 4 x 4 register
tile (rows ty + 16 a, columns tx + 16 b: coalesced stores along the columns); the K axis
advances 8 at a time through shared memory (A tile stored k-major, padded against bank
conflicts). What A, B and C *are* is given by five device functions per op (`Operands`)
over a geometry tuple, so conv2d, its two gradients and matmul/linear share this one
kernel body. The fused epilogue (codegen.py) runs on each value before its store; a bias
is added per row (conv: per output channel) or per column (linear). Split-K (grid z =
groups x splits) writes partial tiles to a scratch array that a second kernel sums in a
fixed order, so results stay deterministic.

Each thread stages the same A rows and the same B column at every K step, so the integer
divisions that locate them in the tensors (a conv's (image, y, x) of a column) are done
once, before the K loop, by `a_row` and `b_col`. What varies along K (a conv's (channel,
tap), or (image, pixel) for its weight gradient) comes from `ktab`, a table of offsets
per k made once when the plan is built (conv.py): a K step reads offsets, it does not
divide. Dense ops need no table (a 1-element stand-in is passed).
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from numba import types

from graphcnn.backends.cuda.device import multiprocessors, numba_cuda
from graphcnn.backends.cuda.registry import (
    PTX_EXAMPLES,
    Launch,
    device_function,
    dmin,
    dummy,
    flat,
    launch_1d,
    scratch,
)

BM = BN = 64
BK = 8
BM_PAD = BM + 1  # the A tile's row length (a literal: shared array shapes must be constants)
TX = TY = 16
RM = RN = 4
LOADS = BM * BK // (TX * TY)   # A (and B) elements each thread stages per K step
A_ROW_STEP = TX * TY // BK     # a thread's A rows are this far apart ...
B_ROW_STEP = TX * TY // BN     # ... and its B elements this many k apart
SPLIT_K_MIN = 4096             # K per split at least this long (tests lower it)
NO_BIAS, ROW_BIAS, COL_BIAS = 0, 1, 2
cu = numba_cuda()  # a module global: the simulator swaps it for its per-thread stand-in


class Operands(NamedTuple):
    """How one op's A, B and C are laid out, as device functions over (geo, ktab):

        a_row(g, m, geo) -> int                    row m's offset in A (flat)
        a_load(A, base, k, ktab, geo, As, kk, mm)  As[kk, mm] = A[m, k]
        b_col(g, col, geo) -> (base, y0, x0)       column col's offset (and image origin)
        b_load(B, base, y0, x0, ktab, k, geo, Bs, kk, nn)   Bs[kk, nn] = B[k, col]
        out_index(g, m, col, geo) -> int           C[m, col]'s offset in C (flat)
    """
    a_row: Any
    a_load: Any
    b_col: Any
    b_load: Any
    out_index: Any


def _rank1(As, Bs, kk, tx, ty, acc):
    """acc += (this thread's rows of A[:, kk]) x (its columns of B[kk, :])."""
    for a in range(RM):
        va = As[kk, ty + a * TY]
        for b in range(RN):
            acc[a, b] += va * Bs[kk, tx + b * TX]


rank1 = device_function(_rank1)


def make_gemm(ops: Operands, bias_mode: int, epi: Any, dtype: Any) -> Any:
    a_row, a_load, b_col, b_load, out_index = ops

    def gemm(A, B, C, bias, M, NC, K, splits, k_chunk, geo, ktab, sides, egeo, partial):
        As = cu.shared.array((BK, BM_PAD), dtype)
        Bs = cu.shared.array((BK, BN), dtype)
        acc = cu.local.array((RM, RN), dtype)
        a_base = cu.local.array(LOADS, types.int64)
        tx = cu.threadIdx.x
        ty = cu.threadIdx.y
        tid = ty * TX + tx
        m0 = cu.blockIdx.y * BM
        n0 = cu.blockIdx.x * BN
        g = cu.blockIdx.z // splits
        split = cu.blockIdx.z % splits
        k_begin = split * k_chunk
        k_end = dmin(K, k_begin + k_chunk)
        # This thread stages A[m0 + mm + r * A_ROW_STEP, k0 + ka] and
        # B[k0 + kb + r * B_ROW_STEP, col] at every K step k0 (r < LOADS).
        ka = tid % BK
        mm = tid // BK
        for r in range(LOADS):
            a_base[r] = a_row(g, m0 + mm + r * A_ROW_STEP, geo)
        kb = tid // BN
        nn = tid % BN
        col = n0 + nn
        b_base, y0, x0 = b_col(g, dmin(col, NC - 1), geo)
        for a in range(RM):
            for b in range(RN):
                acc[a, b] = 0
        for k0 in range(k_begin, k_end, BK):
            for r in range(LOADS):
                row = mm + r * A_ROW_STEP
                if m0 + row < M and k0 + ka < k_end:
                    a_load(A, a_base[r], k0 + ka, ktab, geo, As, ka, row)
                else:
                    As[ka, row] = 0
                kk = kb + r * B_ROW_STEP
                if col < NC and k0 + kk < k_end:
                    b_load(B, b_base, y0, x0, ktab, k0 + kk, geo, Bs, kk, nn)
                else:
                    Bs[kk, nn] = 0
            cu.syncthreads()
            # Unrolled by hand: Numba's CUDA target has no unroll pragma, and LLVM keeps
            # this loop, paying 64-bit index arithmetic for every 16 FMAs.
            rank1(As, Bs, 0, tx, ty, acc)
            rank1(As, Bs, 1, tx, ty, acc)
            rank1(As, Bs, 2, tx, ty, acc)
            rank1(As, Bs, 3, tx, ty, acc)
            rank1(As, Bs, 4, tx, ty, acc)
            rank1(As, Bs, 5, tx, ty, acc)
            rank1(As, Bs, 6, tx, ty, acc)
            rank1(As, Bs, 7, tx, ty, acc)
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


def plan_gemm(ops: Operands, A: Any, B: Any, out: Any, bias: Any, bias_mode: int, M: int,
              NC: int, K: int, groups: int, geo: tuple, epilogue: tuple, ktab: Any = None,
              allow_split: bool = True) -> list[Launch]:
    """The launches of C = A @ B (+ bias) with the epilogue, per group. A and B are passed
    flat; `ktab` is the op's table of offsets along K (None: the op reads none)."""
    from graphcnn.backends.cuda.codegen import specialized
    _, epi, sides, egeo = epilogue
    dtype = _numba_dtype(out.dtype)
    kernel = specialized(make_gemm, ops, bias_mode, epi, dtype)
    tiles = math.ceil(NC / BN) * math.ceil(M / BM) * groups
    splits = 1
    if allow_split and bias_mode == NO_BIAS and K >= 2 * SPLIT_K_MIN:
        splits = max(1, min(K // SPLIT_K_MIN, math.ceil(2 * multiprocessors() / tiles), 64))
    k_chunk = math.ceil(K / splits / BK) * BK if splits > 1 else max(K, 1)
    splits = math.ceil(K / k_chunk) if splits > 1 else 1
    C = flat(out)
    bias = flat(bias) if bias is not None else dummy(out.dtype)
    ktab = ktab if ktab is not None else dummy(np.int32, (1, 4))  # the ops that read none
    grid = (math.ceil(NC / BN), math.ceil(M / BM), groups * splits)
    partial = scratch(splits * C.size, out.dtype) if splits > 1 else dummy(out.dtype)
    launches = [Launch(kernel, grid, (TX, TY), (flat(A), flat(B), C, bias, M, NC, K, splits,
                                                 k_chunk, tuple(geo), ktab, sides, egeo,
                                                 partial))]
    if splits > 1:
        reduce = specialized(make_split_sum, epi)
        launches.append(launch_1d(reduce, C.size, partial, C, splits, sides, egeo))
    return launches


def offset_table(rows: np.ndarray) -> Any:
    """A (K, 4) table of offsets on the device: int32 where every entry fits (half the
    bytes to read per K step), else int64."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    small = rows.size == 0 or (rows.min() >= -2**31 and rows.max() < 2**31)
    return numba_cuda().to_device(rows.astype(np.int32) if small else rows)


def _numba_dtype(dtype: Any) -> Any:
    return types.float64 if np.dtype(dtype) == np.float64 else types.float32


def gemm_signature(f: Any, ngeo: int, egeo: int = 3) -> tuple:
    """The argument types of a GEMM kernel over float type f (int32 offset table, one
    side input)."""
    arr = types.Array(f, 1, "C")
    i8 = types.int64
    return (arr, arr, arr, arr, i8, i8, i8, i8, i8, types.UniTuple(i8, ngeo),
            types.Array(types.int32, 2, "C"), types.UniTuple(arr, 1), types.UniTuple(i8, egeo),
            arr)


def register_ptx_example(name: str, ops: Operands, bias_mode: int, ngeo: int) -> None:
    """A GEMM instance (identity epilogue) for the PTX test."""
    def build(f: Any) -> tuple[Any, tuple]:
        from graphcnn.backends.cuda.codegen import epilogue
        _, epi = epilogue()
        return make_gemm(ops, bias_mode, epi, f).py_func, gemm_signature(f, ngeo)
    PTX_EXAMPLES[name] = build


def _ptx_split_sum(f: Any) -> tuple:
    from graphcnn.backends.cuda.codegen import epilogue
    _, epi = epilogue()
    arr = types.Array(f, 1, "C")
    return make_split_sum(epi).py_func, (arr, arr, types.int64, types.UniTuple(arr, 1),
                                         types.UniTuple(types.int64, 3))


PTX_EXAMPLES["gemm split-K sum"] = _ptx_split_sum
