"""Group norm (and instance norm, its one-channel-per-group case) kernels.

x is viewed as (N, G, M), M = C / G * S: a row per normalized group. The forward pass is
parallel over the N * G rows (a two-pass float64 mean and variance per row, as the NumPy
reference); the gradient is parallel over rows for dx and over channels for the
per-channel weight and bias sums, each accumulated in float64.
"""
from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from numba import prange

from graphcnn.backends.cpu.registry import REDUCE_JIT, TASK_JIT, cpu_kernel, launch


@numba.njit(**TASK_JIT)
def _row_stats(row, eps):
    m = row.size
    total = 0.0
    for k in range(m):
        total += row[k]
    mean = total / max(m, 1)
    total = 0.0
    for k in range(m):
        d = np.float64(row[k]) - mean
        total += d * d
    return mean, 1.0 / math.sqrt(total / max(m, 1) + eps)


@numba.njit(**REDUCE_JIT)
def _group_norm(x, weight, bias, eps, cg, s_len, out):
    """x, out: (N * G, M) rows; channel of row r, offset k: (r % G) * cg + k // s_len."""
    rows = x.shape[0]
    groups = weight.size // cg
    for r in prange(rows):
        mean, rstd = _row_stats(x[r], eps)
        base = (r % groups) * cg
        for k in range(x.shape[1]):
            c = base + k // s_len
            out[r, k] = (x[r, k] - mean) * rstd * np.float64(weight[c]) + np.float64(bias[c])


@numba.njit(**REDUCE_JIT)
def _group_norm_dx(dy, x, weight, eps, cg, s_len, dx, means, rstds):
    """dx per row; each row's statistics kept in means, rstds for _group_norm_dparams."""
    rows, m = x.shape
    groups = weight.size // cg
    for r in prange(rows):
        mean, rstd = _row_stats(x[r], eps)
        means[r] = mean
        rstds[r] = rstd
        base = (r % groups) * cg
        sum_gy = 0.0
        sum_gy_xhat = 0.0
        for k in range(m):
            gy = np.float64(dy[r, k]) * np.float64(weight[base + k // s_len])
            sum_gy += gy
            sum_gy_xhat += gy * (x[r, k] - mean) * rstd
        scale = rstd / max(m, 1)
        for k in range(m):
            gy = np.float64(dy[r, k]) * np.float64(weight[base + k // s_len])
            xhat = (x[r, k] - mean) * rstd
            dx[r, k] = scale * (m * gy - sum_gy - xhat * sum_gy_xhat)


@numba.njit(**REDUCE_JIT)
def _group_norm_dparams(dy, x, means, rstds, groups, cg, s_len, dweight, dbias):
    """Per channel c (parallel): sums over samples and positions of dy * xhat and dy."""
    n_len = x.shape[0] // groups
    for c in prange(dweight.size):
        g = c // cg
        off = (c - g * cg) * s_len
        t_w = 0.0
        t_b = 0.0
        for n in range(n_len):
            r = n * groups + g
            mean, rstd = means[r], rstds[r]
            for s in range(s_len):
                d = np.float64(dy[r, off + s])
                t_b += d
                t_w += d * (x[r, off + s] - mean) * rstd
        dweight[c] = t_w
        dbias[c] = t_b


def _rows(a: np.ndarray, groups: int) -> np.ndarray:
    return a.reshape(a.shape[0] * groups, -1)


def _layout(x: np.ndarray, groups: int) -> tuple[int, int]:
    """(channels per group, positions per channel)."""
    s_len = math.prod(x.shape[2:])
    return x.shape[1] // groups, s_len


@cpu_kernel("group_norm")
def group_norm_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                      attrs: dict[str, Any]) -> None:
    x, weight, bias = ins
    groups = attrs["num_groups"]
    if x.size == 0:
        return
    cg, s_len = _layout(x, groups)
    launch(_group_norm, _rows(x, groups), weight, bias, float(attrs["eps"]), cg, s_len,
           _rows(outs[0], groups))


@cpu_kernel("group_norm_grad")
def group_norm_grad_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                           attrs: dict[str, Any]) -> None:
    dy, x, weight = ins
    dx, dweight, dbias = outs
    groups, eps = attrs["num_groups"], float(attrs["eps"])
    if x.size == 0:
        dweight[...] = 0
        dbias[...] = 0
        return
    cg, s_len = _layout(x, groups)
    rows = x.shape[0] * groups
    # the row statistics between the two passes: N * G float64 values, a small scratch
    means, rstds = np.empty(rows), np.empty(rows)
    launch(_group_norm_dx, _rows(dy, groups), _rows(x, groups), weight, eps, cg, s_len,
           _rows(dx, groups), means, rstds)
    launch(_group_norm_dparams, _rows(dy, groups), _rows(x, groups), means, rstds, groups, cg,
           s_len, dweight, dbias)
