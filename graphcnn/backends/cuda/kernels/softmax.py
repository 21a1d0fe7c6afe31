"""softmax / log_softmax and their gradient helpers along any axis, every tensor seen as
(outer, n, inner): a thread per line, float64 accumulation, as the cpu kernels do."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import types

from graphcnn.backends.cuda.device import numba_cuda
from graphcnn.backends.cuda.kernels.reduce import peak_exp_sum
from graphcnn.backends.cuda.registry import (
    Launch,
    cuda_kernel,
    device_kernel,
    flat,
    launch_1d,
)

cu = numba_cuda()
f8, i8, b1 = types.float64, types.int64, types.boolean


@device_kernel(lambda f: (f[::1], f[::1], i8, i8, i8, b1))
def _softmax_lines(x, out, outer, n, inner, log):
    line = cu.grid(1)
    while line < outer * inner:
        o = line // inner
        base = o * n * inner + (line - o * inner)
        peak, total = peak_exp_sum(x, base, n, inner)
        if log:
            # (x - peak) - log(total): peak + log(total) first loses log(4) against 1e17
            lse = math.log(total)
            for j in range(n):
                out[base + j * inner] = (f8(x[base + j * inner]) - peak) - lse
        else:
            scale = 1.0 / total
            for j in range(n):
                out[base + j * inner] = math.exp(f8(x[base + j * inner]) - peak) * scale
        line += cu.gridsize(1)


@device_kernel(lambda f: (f[::1], f[::1], f[::1], i8, i8, i8, b1))
def _softmax_grad_lines(g, y, out, outer, n, inner, log):
    """softmax: y * (g - sum(g*y)); log_softmax: g - exp(y) * sum(g)."""
    line = cu.grid(1)
    while line < outer * inner:
        o = line // inner
        base = o * n * inner + (line - o * inner)
        total = 0.0
        if log:
            for j in range(n):
                total += g[base + j * inner]
            for j in range(n):
                k = base + j * inner
                out[k] = g[k] - math.exp(f8(y[k])) * total
        else:
            for j in range(n):
                k = base + j * inner
                total += f8(g[k]) * y[k]
            for j in range(n):
                k = base + j * inner
                out[k] = y[k] * (g[k] - total)
        line += cu.gridsize(1)


def _lines(shape: tuple[int, ...], axis: int) -> tuple[int, int, int]:
    return (int(np.prod(shape[:axis], dtype=np.int64)), shape[axis],
            int(np.prod(shape[axis + 1:], dtype=np.int64)))


def _along_axis(kernel: Any, log: bool) -> Any:
    """The plan of a line kernel: its inputs (x; or g and y), the output, then the lines'
    (outer, n, inner) and `log`; nothing to launch on an empty tensor."""
    def plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
        outer, n, inner = _lines(ins[0].shape, attrs["axis"])
        if ins[0].size == 0:
            return []
        return [launch_1d(kernel, outer * inner, *(flat(a) for a in ins), flat(outs[0]),
                          outer, n, inner, log)]
    return plan


cuda_kernel("softmax")(_along_axis(_softmax_lines, False))
cuda_kernel("log_softmax")(_along_axis(_softmax_lines, True))
cuda_kernel("softmax_grad")(_along_axis(_softmax_grad_lines, False))
cuda_kernel("log_softmax_grad")(_along_axis(_softmax_grad_lines, True))
