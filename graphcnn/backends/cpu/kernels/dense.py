"""Dense kernels: linear and matmul, parallel over output rows.

These are plain loop nests that LLVM vectorizes along the contiguous axis; the fast,
register-blocked versions come with the kernel-speed work."""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange

from graphcnn.backends.cpu.blas import matmul
from graphcnn.backends.cpu.registry import JIT, TASK_JIT, cpu_kernel, launch


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


@numba.njit(**JIT)
def _matmul_tn(a, b, out):
    for i in prange(out.shape[0]):
        matmul_tn_task(i, a, b, out)


_NO_BIAS = {np.dtype(np.float32): np.zeros(1, np.float32),
            np.dtype(np.float64): np.zeros(1, np.float64)}


def linear_args(ins: list[np.ndarray], out: np.ndarray, attrs: dict[str, Any]) -> tuple:
    """The arguments of matmul_nt_task after the row (also used by fused kernels)."""
    has_bias = len(ins) == 3
    return (ins[0], ins[1], out, ins[2] if has_bias else _NO_BIAS[ins[0].dtype], has_bias)


MATMUL_TASKS = {(False, False): "matmul_nn_task", (False, True): "matmul_nt_task",
                (True, False): "matmul_tn_task", (True, True): "matmul_tt_task"}


def matmul_args(ins: list[np.ndarray], out: np.ndarray, attrs: dict[str, Any]) -> tuple:
    if not attrs["trans_a"] and attrs["trans_b"]:
        return (ins[0], ins[1], out, _NO_BIAS[ins[0].dtype], False)
    return (ins[0], ins[1], out)


# From this many multiply-adds on, the BLAS GEMM behind numpy's matmul beats the loops
# above (ResNet-18's classifier, 512 x 1000 at batch 1, ran at 2.4 GFLOP/s in them).
MIN_BLAS_WORK = 32_768


def run_as_blas(op: str, ins: list[np.ndarray], out: np.ndarray, attrs: dict[str, Any]) -> bool:
    """linear (without its bias) or matmul through BLAS if big enough; False leaves the
    work to the loops above. Fused groups call this too."""
    a, b = ins[0], ins[1]
    if out.size * (a.shape[0] if op == "matmul" and attrs["trans_a"] else a.shape[1]) \
            < MIN_BLAS_WORK:
        return False
    if op == "linear":
        matmul(a, b.T, out)
    else:
        matmul(a.T if attrs["trans_a"] else a, b.T if attrs["trans_b"] else b, out)
    return True


@cpu_kernel("linear")
def linear_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    if run_as_blas("linear", ins, outs[0], attrs):
        if len(ins) == 3:
            np.add(outs[0], ins[2], out=outs[0])
        return
    launch(_matmul_nt, *linear_args(ins, outs[0], attrs))


@cpu_kernel("matmul")
def matmul_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    a, b = ins
    out = outs[0]
    if run_as_blas("matmul", ins, out, attrs):
        return
    ta, tb = attrs["trans_a"], attrs["trans_b"]
    if not ta and not tb:
        launch(_matmul_nn, a, b, out)
    elif not ta and tb:
        launch(_matmul_nt, a, b, out, _NO_BIAS[a.dtype], False)
    elif ta and not tb:
        launch(_matmul_tn, a, b, out)
    else:
        launch(_matmul_tt, a, b, out)
