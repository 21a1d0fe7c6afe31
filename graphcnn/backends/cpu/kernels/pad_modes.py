"""Reflect / edge / wrap padding and its gradient, on arrays viewed as 4-D (leading axes
of size 1). The per-axis index maps come from the op's registry entry
(graphcnn/ops/pad_modes.py) as int64 arrays, so each kernel compiles once per dtype: the
forward pass gathers out[i, j, k, l] = x[m0[i], m1[j], m2[k], m3[l]]; the gradient
gathers too, each input element summing (in float64) the output positions that read it."""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange

from graphcnn.backends.cpu.registry import JIT, cpu_kernel, launch
from graphcnn.ops.pad_modes import MAX_RANK, inverse_map, source_map


@numba.njit(**JIT)
def _gather(x, out, m0, m1, m2, m3):
    d0, d1, d2, d3 = out.shape
    for ijk in prange(d0 * d1 * d2):
        i = ijk // (d1 * d2)
        j = (ijk // d2) % d1
        k = ijk % d2
        si, sj, sk = m0[i], m1[j], m2[k]
        for l in range(d3):
            out[i, j, k, l] = x[si, sj, sk, m3[l]]


@numba.njit(**JIT)
def _gather_sum(dy, dx, o0, p0, o1, p1, o2, p2, o3, p3):
    d0, d1, d2, d3 = dx.shape
    for ijk in prange(d0 * d1 * d2):
        i = ijk // (d1 * d2)
        j = (ijk // d2) % d1
        k = ijk % d2
        for l in range(d3):
            total = 0.0
            for a in range(o0[i], o0[i + 1]):
                for b in range(o1[j], o1[j + 1]):
                    for c in range(o2[k], o2[k + 1]):
                        for e in range(o3[l], o3[l + 1]):
                            total += dy[p0[a], p1[b], p2[c], p3[e]]
            dx[i, j, k, l] = total


def _as4(shape: tuple[int, ...], pads: tuple[tuple[int, int], ...]
         ) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
    lead = MAX_RANK - len(shape)
    return (1,) * lead + tuple(shape), ((0, 0),) * lead + tuple(pads)


@cpu_kernel("mode_pad")
def mode_pad_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                    attrs: dict[str, Any]) -> None:
    x, out = ins[0], outs[0]
    if out.size == 0:
        return
    shape, pads = _as4(x.shape, attrs["pads"])
    maps = [source_map(d, b, a, attrs["mode"]) for d, (b, a) in zip(shape, pads)]
    launch(_gather, x.reshape(shape), out.reshape(tuple(len(m) for m in maps)), *maps)


@cpu_kernel("mode_pad_grad")
def mode_pad_grad_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                         attrs: dict[str, Any]) -> None:
    dy, dx = ins[0], outs[0]
    if dx.size == 0:
        return
    shape, pads = _as4(dx.shape, attrs["pads"])
    tables: list[np.ndarray] = []
    for d, (b, a) in zip(shape, pads):
        tables.extend(inverse_map(d, b, a, attrs["mode"]))
    out_shape = tuple(d + b + a for d, (b, a) in zip(shape, pads))
    launch(_gather_sum, dy.reshape(out_shape), dx.reshape(shape), *tables)
