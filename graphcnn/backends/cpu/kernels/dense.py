"""Dense kernels: linear and matmul as loops parallel over output rows, for the small
products, and the cost model that sends the others to BLAS (blas.matmul: OpenBLAS's
register-blocked GEMM on Numba's threads). Which runs a node is backends/cpu/strategy.py's
choice, made when the runner is built.

The loops are plain loop nests that LLVM vectorizes along the contiguous axis."""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange

from graphcnn.backends.cpu.registry import JIT, TASK_JIT


@numba.njit(**TASK_JIT)
def matmul_nn_task(i, a, b, out):
    """Row i of out = a @ b; a (M,K), b (K,N): k-j order, the j loop is contiguous."""
    k_len, n_len = a.shape[1], b.shape[1]
    for j in range(n_len):
        out[i, j] = 0
    for k in range(k_len):
        aik = a[i, k]
        for j in range(n_len):
            out[i, j] += aik * b[k, j]


@numba.njit(fastmath={"reassoc"}, **TASK_JIT)  # vectorized dot sums
def matmul_nt_task(i, a, b, out, bias, has_bias):
    """Row i of out = a @ b.T (+ bias); a (M,K), b (N,K): contiguous dot products."""
    k_len, n_len = a.shape[1], b.shape[0]
    for j in range(n_len):
        total = 0.0
        for k in range(k_len):
            total += a[i, k] * b[j, k]
        out[i, j] = total + bias[j] if has_bias else total


@numba.njit(**TASK_JIT)
def matmul_tn_task(i, a, b, out):
    """Row i of out = a.T @ b; a (K,M), b (K,N)."""
    k_len, n_len = a.shape[0], b.shape[1]
    for j in range(n_len):
        out[i, j] = 0
    for k in range(k_len):
        aki = a[k, i]
        for j in range(n_len):
            out[i, j] += aki * b[k, j]


@numba.njit(fastmath={"reassoc"}, **TASK_JIT)  # vectorized dot sums
def matmul_tt_task(i, a, b, out):
    """Row i of out = a.T @ b.T; a (K,M), b (N,K). Only second-order graphs ask for it."""
    k_len, n_len = a.shape[0], b.shape[0]
    for j in range(n_len):
        total = 0.0
        for k in range(k_len):
            total += a[k, i] * b[j, k]
        out[i, j] = total


@numba.njit(**JIT)
def _matmul_tt(a, b, out):
    for i in prange(out.shape[0]):
        matmul_tt_task(i, a, b, out)


@numba.njit(**JIT)
def _matmul_nn(a, b, out):
    for i in prange(out.shape[0]):
        matmul_nn_task(i, a, b, out)


@numba.njit(**JIT)
def _matmul_nt(a, b, out, bias, has_bias):
    for i in prange(out.shape[0]):
        matmul_nt_task(i, a, b, out, bias, has_bias)


@numba.njit(fastmath={"reassoc"}, **JIT)  # vectorized dot sums
def _matmul_nt_columns(a, b, out, bias, has_bias):
    """out = a @ b.T (+ bias) for a few rows of a: the threads split b's rows (out's
    columns), COLUMN_BLOCK at a time, so a classifier at batch 1 reads its weights once, on
    every core, as contiguous dot products. (Split by out's rows, one row is one thread's.)"""
    m_len, k_len = a.shape
    n_len = b.shape[0]
    for block in prange((n_len + COLUMN_BLOCK - 1) // COLUMN_BLOCK):
        for j in range(block * COLUMN_BLOCK, min(n_len, (block + 1) * COLUMN_BLOCK)):
            for i in range(m_len):
                total = 0.0
                for k in range(k_len):
                    total += a[i, k] * b[j, k]
                out[i, j] = total + bias[j] if has_bias else total


@numba.njit(**JIT)
def _matmul_tn(a, b, out):
    for i in prange(out.shape[0]):
        matmul_tn_task(i, a, b, out)


COLUMN_BLOCK = 16

NO_BIAS = {np.dtype(np.float32): np.zeros(1, np.float32),
           np.dtype(np.float64): np.zeros(1, np.float64)}

# The loops above by (trans_a, trans_b); _matmul_nt also takes (bias, has_bias).
MATMUL_LOOPS = {(False, False): _matmul_nn, (False, True): _matmul_nt,
                (True, False): _matmul_tn, (True, True): _matmul_tt}

# From this many multiply-adds on, the BLAS GEMM behind numpy's matmul beats the loops
# above: the loops hold no block of the result in registers, and a classifier layer
# (ResNet-18's 512 x 1000 at batch 1) runs far below the machine's rate in them.
MIN_BLAS_WORK = 32_768


# Up to this many rows, a @ b.T by columns (_matmul_nt_columns) is offered beside BLAS and
# the autotuner times both. OpenBLAS's GEMM packs b for one row as for many; the columns
# loop streams it once. `python -m benchmarks.classifier_gemv` (2 threads, weights out of
# cache, medians; 2-core AMD EPYC, 2026-12-05), columns' time / BLAS's at 1, 4, 8 rows:
# 2048x1000 (ResNet-50's classifier) 0.23, 0.70, 1.02; 25088x4096 (VGG-16's fc6, 14 ms
# against 36) 0.40, 0.69, 1.04; at 16 rows 1.2-1.5.
MAX_COLUMNS_ROWS = 4


def columns_computes(op: str, attrs: dict[str, Any]) -> bool:
    """Whether the columns loop computes the op at all: linear, or matmul(a, b.T)."""
    return op == "linear" or (not attrs["trans_a"] and attrs["trans_b"])


def use_columns(op: str, a_shape: tuple[int, ...], out_shape: tuple[int, ...],
                attrs: dict[str, Any]) -> bool:
    """Whether linear / matmul(a, b.T) -> out is offered the columns loop: a few rows, enough
    columns to split over the threads, and BLAS's amount of work (below it, the row loops)."""
    if not columns_computes(op, attrs):
        return False
    return (out_shape[0] <= MAX_COLUMNS_ROWS and out_shape[1] >= 4 * COLUMN_BLOCK
            and use_blas(op, a_shape, out_shape, attrs))


def use_blas(op: str, a_shape: tuple[int, ...], out_shape: tuple[int, ...],
             attrs: dict[str, Any]) -> bool:
    """The cost model: linear or matmul (a, b) -> out through BLAS when it has at least
    MIN_BLAS_WORK multiply-adds, else the loops above."""
    k = a_shape[0] if op == "matmul" and attrs["trans_a"] else a_shape[1]
    return out_shape[0] * out_shape[1] * k >= MIN_BLAS_WORK
