"""Elementwise, broadcasting and sum_to kernels. Maps run over the flat buffer; broadcast
ops view both operands as 4-D with zero strides where broadcast, so one compiled kernel
serves every rank up to 4."""
from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from numba import prange

from graphcnn.backends.cpu.scalar_math import fast_tanh
from graphcnn.backends.cpu.registry import JIT, REDUCE_JIT, cpu_kernel, launch


@numba.njit(**JIT)
def _relu(x, out):
    for i in prange(x.size):
        out[i] = x[i] if x[i] > 0 else 0


@numba.njit(**JIT)
def _relu_grad(g, x, out):
    for i in prange(x.size):
        out[i] = g[i] if x[i] > 0 else 0


@numba.njit(**JIT)
def _leaky_relu(x, out, alpha):
    for i in prange(x.size):
        out[i] = x[i] if x[i] > 0 else x[i] * alpha


@numba.njit(**JIT)
def _leaky_relu_grad(g, x, out, alpha):
    for i in prange(x.size):
        out[i] = g[i] if x[i] > 0 else g[i] * alpha


@numba.njit(**JIT)
def _sigmoid(x, out):
    for i in prange(x.size):
        v = x[i]
        if v >= 0:
            out[i] = 1 / (1 + math.exp(-v))
        else:
            e = math.exp(v)
            out[i] = e / (1 + e)


@numba.njit(**JIT)
def _sigmoid_grad(g, y, out):
    for i in prange(y.size):
        out[i] = g[i] * y[i] * (1 - y[i])


@numba.njit(**JIT)
def _tanh(x, out):
    for i in prange(x.size):
        out[i] = fast_tanh(x[i])


@numba.njit(**JIT)
def _tanh_grad(g, y, out):
    for i in prange(y.size):
        out[i] = g[i] * (1 - y[i] * y[i])


@numba.njit(**JIT)
def _clip(x, out, low, high):
    for i in prange(x.size):
        v = x[i]  # selects, not min/max (see the clip op's scalar formula)
        out[i] = low if v < low else (high if v > high else v)


@numba.njit(**JIT)
def _clip_grad(g, x, out, low, high):
    for i in prange(x.size):
        out[i] = g[i] if low < x[i] < high else 0


def _flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1)


@cpu_kernel("relu")
def relu_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    launch(_relu, _flat(ins[0]), _flat(outs[0]))


@cpu_kernel("relu_grad")
def relu_grad_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    launch(_relu_grad, _flat(ins[0]), _flat(ins[1]), _flat(outs[0]))


@cpu_kernel("leaky_relu")
def leaky_relu_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    launch(_leaky_relu, _flat(ins[0]), _flat(outs[0]), attrs["alpha"])


@cpu_kernel("leaky_relu_grad")
def leaky_relu_grad_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                           attrs: dict[str, Any]) -> None:
    launch(_leaky_relu_grad, _flat(ins[0]), _flat(ins[1]), _flat(outs[0]), attrs["alpha"])


@cpu_kernel("sigmoid")
def sigmoid_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    launch(_sigmoid, _flat(ins[0]), _flat(outs[0]))


@cpu_kernel("sigmoid_grad")
def sigmoid_grad_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                        attrs: dict[str, Any]) -> None:
    launch(_sigmoid_grad, _flat(ins[0]), _flat(ins[1]), _flat(outs[0]))


@cpu_kernel("tanh")
def tanh_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    launch(_tanh, _flat(ins[0]), _flat(outs[0]))


@cpu_kernel("tanh_grad")
def tanh_grad_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    launch(_tanh_grad, _flat(ins[0]), _flat(ins[1]), _flat(outs[0]))


@cpu_kernel("clip")
def clip_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    launch(_clip, _flat(ins[0]), _flat(outs[0]), attrs["low"], attrs["high"])


@cpu_kernel("clip_grad")
def clip_grad_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    launch(_clip_grad, _flat(ins[0]), _flat(ins[1]), _flat(outs[0]), attrs["low"],
           attrs["high"])


# ---- broadcasting binary ops ----------------------------------------------------------

ADD, SUB, MUL, DIV = 0, 1, 2, 3
_BINARY_CODES = {"add": ADD, "sub": SUB, "mul": MUL, "div": DIV}


@numba.njit(**JIT)
def _binary_flat(a, b, out, code):
    n = out.size
    if code == ADD:
        for i in prange(n):
            out[i] = a[i] + b[i]
    elif code == SUB:
        for i in prange(n):
            out[i] = a[i] - b[i]
    elif code == MUL:
        for i in prange(n):
            out[i] = a[i] * b[i]
    else:
        for i in prange(n):
            out[i] = a[i] / b[i]


@numba.njit(**JIT)
def _binary_4d(a, b, out, code):
    d0, d1, d2, d3 = out.shape
    for ij in prange(d0 * d1):
        i = ij // d1
        j = ij % d1
        for k in range(d2):
            for m in range(d3):
                x = a[i, j, k, m]
                y = b[i, j, k, m]
                if code == ADD:
                    out[i, j, k, m] = x + y
                elif code == SUB:
                    out[i, j, k, m] = x - y
                elif code == MUL:
                    out[i, j, k, m] = x * y
                else:
                    out[i, j, k, m] = x / y


def as_4d(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Pad a shape of rank <= 4 with leading ones; collapse leading axes of a longer one."""
    if len(shape) <= 4:
        return (1,) * (4 - len(shape)) + tuple(shape)
    return (math.prod(shape[:-3]),) + tuple(shape[-3:])


def _broadcast_4d(a: np.ndarray, out_shape: tuple[int, ...]) -> np.ndarray:
    padded = a.reshape((1,) * (len(out_shape) - a.ndim) + a.shape)
    return np.broadcast_to(padded, out_shape)


def _binary_kernel(code: int):
    ufunc = [np.add, np.subtract, np.multiply, np.divide][code]

    def kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
        a, b = ins
        out = outs[0]
        if a.shape == b.shape == out.shape:
            launch(_binary_flat, _flat(a), _flat(b), _flat(out), code)
        elif out.ndim <= 4:
            shape = as_4d(out.shape)
            launch(_binary_4d, _broadcast_4d(a, shape), _broadcast_4d(b, shape),
                   out.reshape(shape), code)
        else:
            # Rare (rank > 4): NumPy's vectorized ufunc, no Python loop per element.
            ufunc(a, b, out=out)
    return kernel


for _name, _code in _BINARY_CODES.items():
    cpu_kernel(_name)(_binary_kernel(_code))


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
