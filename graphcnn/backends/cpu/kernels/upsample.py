"""upsample_nearest2d: every output row copies one input row with each pixel repeated;
parallel over (n, c, output row)."""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange

from graphcnn.backends.cpu.registry import JIT, cpu_kernel, launch


@numba.njit(**JIT)
def _upsample_nearest2d(x, out, sh, sw):
    planes, in_w = x.shape[0], x.shape[2]
    out_h = out.shape[1]
    for task in prange(planes * out_h):
        p, oy = task // out_h, task % out_h
        iy = oy // sh
        for ix in range(in_w):
            v = x[p, iy, ix]
            for b in range(sw):
                out[p, oy, ix * sw + b] = v


@cpu_kernel("upsample_nearest2d")
def upsample_nearest2d_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                              attrs: dict[str, Any]) -> None:
    x, out = ins[0], outs[0]
    if out.size == 0:
        return
    n, c, h, w = x.shape
    sh, sw = attrs["scale"]
    launch(_upsample_nearest2d, x.reshape(n * c, h, w), out.reshape(n * c, h * sh, w * sw),
           sh, sw)
