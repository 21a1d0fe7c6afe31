"""Reflect / edge / wrap padding and its gradient on the device: the arrays viewed as
4-D, one thread per output element (grid-stride); the per-axis index maps of the op's
registry entry (graphcnn/ops/pad_modes.py) copied to the device once, when the launch is
planned. The gradient gathers, each input element summing in float64 the output
positions that read it (no atomics, the same order as the cpu kernel)."""
from __future__ import annotations

from typing import Any

import numpy as np
from numba import types

from graphcnn.backends.cuda.device import numba_cuda
from graphcnn.backends.cuda.registry import Launch, cuda_kernel, device_kernel, flat, launch_1d
from graphcnn.ops.pad_modes import MAX_RANK, inverse_map, source_map

cu = numba_cuda()
i8 = types.int64
I = types.int64[::1]


@device_kernel(lambda f: (f[::1], f[::1], i8, i8, i8, i8, i8, i8, i8, I, I, I, I))
def _gather(x, out, d1, d2, d3, s1, s2, s3, n, m0, m1, m2, m3):
    """out (n elements, axes of sizes (-, d1, d2, d3)) from x (axes (-, s1, s2, s3))."""
    t = cu.grid(1)
    while t < n:
        l = t % d3
        k = (t // d3) % d2
        j = (t // (d3 * d2)) % d1
        i = t // (d3 * d2 * d1)
        out[t] = x[((m0[i] * s1 + m1[j]) * s2 + m2[k]) * s3 + m3[l]]
        t += cu.gridsize(1)


@device_kernel(lambda f: (f[::1], f[::1], i8, i8, i8, i8, i8, i8, i8, I, I, I, I, I, I, I, I))
def _gather_sum(dy, dx, s1, s2, s3, d1, d2, d3, n, o0, p0, o1, p1, o2, p2, o3, p3):
    """dx (n elements, axes (-, s1, s2, s3)) from dy (axes (-, d1, d2, d3))."""
    t = cu.grid(1)
    while t < n:
        l = t % s3
        k = (t // s3) % s2
        j = (t // (s3 * s2)) % s1
        i = t // (s3 * s2 * s1)
        total = 0.0
        for a in range(o0[i], o0[i + 1]):
            for b in range(o1[j], o1[j + 1]):
                for c in range(o2[k], o2[k + 1]):
                    for e in range(o3[l], o3[l + 1]):
                        total += dy[((p0[a] * d1 + p1[b]) * d2 + p2[c]) * d3 + p3[e]]
        dx[t] = total
        t += cu.gridsize(1)


def _as4(shape: tuple[int, ...], pads: tuple[tuple[int, int], ...]
         ) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
    lead = MAX_RANK - len(shape)
    return (1,) * lead + tuple(shape), ((0, 0),) * lead + tuple(pads)


def _device(table: np.ndarray) -> Any:
    return cu.to_device(np.ascontiguousarray(table, dtype=np.int64))


@cuda_kernel("mode_pad")
def mode_pad_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    x, out = ins[0], outs[0]
    if out.size == 0:
        return []
    shape, pads = _as4(tuple(x.shape), attrs["pads"])
    maps = [source_map(d, b, a, attrs["mode"]) for d, (b, a) in zip(shape, pads)]
    sizes = [len(m) for m in maps]
    return [launch_1d(_gather, out.size, flat(x), flat(out), sizes[1], sizes[2], sizes[3],
                      shape[1], shape[2], shape[3], out.size, *[_device(m) for m in maps])]


@cuda_kernel("mode_pad_grad")
def mode_pad_grad_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]
                       ) -> list[Launch]:
    dy, dx = ins[0], outs[0]
    if dx.size == 0:
        return []
    shape, pads = _as4(tuple(dx.shape), attrs["pads"])
    tables = []
    for d, (b, a) in zip(shape, pads):
        tables.extend(_device(t) for t in inverse_map(d, b, a, attrs["mode"]))
    padded = [d + b + a for d, (b, a) in zip(shape, pads)]
    return [launch_1d(_gather_sum, dx.size, flat(dy), flat(dx), shape[1], shape[2], shape[3],
                      padded[1], padded[2], padded[3], dx.size, *tables)]
