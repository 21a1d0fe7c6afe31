"""Dense kernels: linear and matmul, parallel over output rows.

These are plain loop nests that LLVM vectorizes along the contiguous axis; the fast,
register-blocked versions come with the kernel-speed work."""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange

from graphcnn.backends.cpu.registry import JIT, cpu_kernel


@numba.njit(**JIT)
def _matmul_nn(a, b, out):
    """out = a @ b; a (M,K), b (K,N): i-k-j order, the j loop is contiguous."""
    m_len, k_len = a.shape
    n_len = b.shape[1]
    for i in prange(m_len):
        for j in range(n_len):
            out[i, j] = 0
        for k in range(k_len):
            aik = a[i, k]
            for j in range(n_len):
                out[i, j] += aik * b[k, j]


@numba.njit(**JIT)
def _matmul_nt(a, b, out, bias, has_bias):
    """out = a @ b.T (+ bias); a (M,K), b (N,K): rows of both are contiguous dots."""
    m_len, k_len = a.shape
    n_len = b.shape[0]
    for i in prange(m_len):
        for j in range(n_len):
            total = 0.0
            for k in range(k_len):
                total += a[i, k] * b[j, k]
            out[i, j] = total + bias[j] if has_bias else total


@numba.njit(**JIT)
def _matmul_tn(a, b, out):
    """out = a.T @ b; a (K,M), b (K,N)."""
    k_len, m_len = a.shape
    n_len = b.shape[1]
    for i in prange(m_len):
        for j in range(n_len):
            out[i, j] = 0
        for k in range(k_len):
            aki = a[k, i]
            for j in range(n_len):
                out[i, j] += aki * b[k, j]


_NO_BIAS = {np.dtype(np.float32): np.zeros(1, np.float32),
            np.dtype(np.float64): np.zeros(1, np.float64)}


@cpu_kernel("linear")
def linear_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    x, w = ins[0], ins[1]
    has_bias = len(ins) == 3
    bias = ins[2] if has_bias else _NO_BIAS[x.dtype]
    _matmul_nt(x, w, outs[0], bias, has_bias)


@cpu_kernel("matmul")
def matmul_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    a, b = ins
    out = outs[0]
    ta, tb = attrs["trans_a"], attrs["trans_b"]
    if not ta and not tb:
        _matmul_nn(a, b, out)
    elif not ta and tb:
        _matmul_nt(a, b, out, _NO_BIAS[a.dtype], False)
    elif ta and not tb:
        _matmul_tn(a, b, out)
    else:  # a.T @ b.T = (b @ a).T; only second-order graphs ask for this
        _matmul_nn(np.ascontiguousarray(a.T), np.ascontiguousarray(b.T), out)
