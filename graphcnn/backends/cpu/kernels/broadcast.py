"""The kernels of the ops that broadcasting's gradients need: sum_to and broadcast_to.
broadcast_to views its operand as 4-D with zero strides where broadcast, so one compiled
kernel serves every rank up to 4. (The elementwise ops with a scalar formula, relu, add
and the rest, run as generated kernels: kernels/fused.py.)"""
from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from numba import prange

from graphcnn.backends.cpu.registry import JIT, REDUCE_JIT, cpu_kernel, launch


def as_4d(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Pad a shape of rank <= 4 with leading ones; collapse leading axes of a longer one."""
    if len(shape) <= 4:
        return (1,) * (4 - len(shape)) + tuple(shape)
    return (math.prod(shape[:-3]),) + tuple(shape[-3:])


def _flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1)


def _broadcast_4d(a: np.ndarray, shape4: tuple[int, ...]) -> np.ndarray:
    """View `a` (broadcastable to an output of rank <= 4) as 4-D with zero strides."""
    return np.broadcast_to(a.reshape(as_4d(a.shape)), shape4)


# ---- sum_to / broadcast_to ------------------------------------------------------------

@numba.njit(**REDUCE_JIT)
def _sum_outer_inner(x, out):
    """x: (A, B, C) -> out: (B,), summing over A and C; accumulates in float64."""
    a_len, b_len, c_len = x.shape
    for j in prange(b_len):
        total = 0.0
        for i in range(a_len):
            for k in range(c_len):
                total += x[i, j, k]
        out[j] = total


def _kept_block(src: tuple[int, ...], dst: tuple[int, ...]) -> tuple[int, int, int] | None:
    """If summing `src` to `dst` keeps one contiguous block of axes, return (A, B, C):
    the sizes before, of, and after that block. Otherwise None."""
    dst = (1,) * (len(src) - len(dst)) + tuple(dst)
    kept = [i for i, (s, d) in enumerate(zip(src, dst)) if s == d and s != 1]
    if not kept:
        return (math.prod(src), 1, 1)
    first, last = kept[0], kept[-1]
    if any(src[i] != dst[i] for i in range(first, last + 1)):
        return None
    return (math.prod(src[:first]), math.prod(src[first:last + 1]), math.prod(src[last + 1:]))


@cpu_kernel("sum_to")
def sum_to_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    x, out = ins[0], outs[0]
    block = _kept_block(x.shape, out.shape)
    if block is not None:
        launch(_sum_outer_inner, x.reshape(block), _flat(out))
    else:
        lead = x.ndim - out.ndim
        axes = tuple(range(lead)) + tuple(
            lead + i for i, d in enumerate(out.shape) if d == 1 and x.shape[lead + i] != 1)
        np.sum(x, axis=axes, out=out.reshape([d for i, d in enumerate(x.shape) if i not in axes]))


@numba.njit(**JIT)
def _copy_4d(src, out):
    d0, d1, d2, d3 = out.shape
    for ij in prange(d0 * d1):
        i = ij // d1
        j = ij % d1
        for k in range(d2):
            for m in range(d3):
                out[i, j, k, m] = src[i, j, k, m]


@cpu_kernel("broadcast_to")
def broadcast_to_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                        attrs: dict[str, Any]) -> None:
    x, out = ins[0], outs[0]
    if out.ndim <= 4:
        shape = as_4d(out.shape)
        launch(_copy_4d, _broadcast_4d(x, shape), out.reshape(shape))
    else:
        np.copyto(out, np.broadcast_to(x, out.shape))
