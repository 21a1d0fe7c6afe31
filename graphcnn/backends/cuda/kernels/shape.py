"""Data movement: one strided-copy kernel serves reshape/flatten, concat, pad, slice,
transpose, broadcast_to and upsample_nearest2d. Each op is described on the host, once, as
up to six axes (after merging the axes that both sides walk contiguously) with a base
offset and element strides for the source and the destination (stride 0: broadcast)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from numba import types

from graphcnn.backends.cuda.device import numba_cuda
from graphcnn.backends.cuda.kernels.reduce import U6, contiguous_strides, offset6, pad6
from graphcnn.backends.cuda.registry import Launch, cuda_kernel, device_kernel, flat, launch_1d

cu = numba_cuda()
i8 = types.int64


@device_kernel(lambda f: (f[::1], f[::1], i8, U6, U6, U6, i8, i8))
def _copy_strided(src, dst, n, dims, sst, dst_st, sbase, dbase):
    i = cu.grid(1)
    while i < n:
        dst[dbase + offset6(i, dims, dst_st)] = src[sbase + offset6(i, dims, sst)]
        i += cu.gridsize(1)


@device_kernel(lambda f: (f[::1], f))
def _fill(dst, value):
    i = cu.grid(1)
    while i < dst.size:
        dst[i] = value
        i += cu.gridsize(1)


def _merge3(dims: Sequence[int], a: Sequence[int], b: Sequence[int]
            ) -> tuple[list[int], list[int], list[int]]:
    rows = [[int(d), int(x), int(y)] for d, x, y in zip(dims, a, b) if d != 1]
    out: list[list[int]] = []
    for d, x, y in rows:
        if out and out[-1][1] == x * d and out[-1][2] == y * d:
            out[-1] = [out[-1][0] * d, x, y]
        else:
            out.append([d, x, y])
    return [r[0] for r in out], [r[1] for r in out], [r[2] for r in out]


def plan_copy(src: Any, dst: Any, dims: Sequence[int], src_strides: Sequence[int],
              dst_strides: Sequence[int], src_base: int = 0, dst_base: int = 0,
              what: str = "copy") -> list[Launch]:
    n = int(np.prod(dims, dtype=np.int64))
    if n == 0:
        return []
    d, s, t = _merge3(dims, src_strides, dst_strides)
    dims6, sst6 = pad6(d, s, what)
    _, dst6 = pad6(d, t, what)
    return [launch_1d(_copy_strided, n, flat(src), flat(dst), n, dims6, sst6, dst6,
                      int(src_base), int(dst_base))]


@cuda_kernel("reshape", "flatten")
def reshape_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    n = ins[0].size
    return plan_copy(ins[0], outs[0], (n,), (1,), (1,), what="reshape")


@cuda_kernel("transpose")
def transpose_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    x, out = ins[0], outs[0]
    if x.ndim == 0 or len(attrs["perm"]) == 0:
        return plan_copy(x, out, (x.size,), (1,), (1,), what="transpose")
    st = contiguous_strides(x.shape)
    perm = attrs["perm"]
    return plan_copy(x, out, out.shape, [st[p] for p in perm], contiguous_strides(out.shape),
                     what="transpose")


@cuda_kernel("broadcast_to")
def broadcast_to_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    x, out = ins[0], outs[0]
    shape = tuple(out.shape)
    xs = (1,) * (len(shape) - x.ndim) + tuple(x.shape)
    st = contiguous_strides(xs)
    src_st = [0 if (xs[d] == 1 and shape[d] != 1) else st[d] for d in range(len(shape))]
    return plan_copy(x, out, shape, src_st, contiguous_strides(shape), what="broadcast_to")


@cuda_kernel("slice")
def slice_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    x, out = ins[0], outs[0]
    st = contiguous_strides(x.shape)
    base = sum(s * t for s, t in zip(attrs["starts"], st))
    return plan_copy(x, out, out.shape, st, contiguous_strides(out.shape), src_base=base,
                     what="slice")


@cuda_kernel("pad")
def pad_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    x, out = ins[0], outs[0]
    value = np.dtype(out.dtype).type(attrs["value"])
    ost = contiguous_strides(out.shape)
    base = sum(b * t for (b, _), t in zip(attrs["pads"], ost))
    return ([launch_1d(_fill, out.size, flat(out), value)] if out.size else []) + plan_copy(
        x, out, x.shape, contiguous_strides(x.shape), ost, dst_base=base, what="pad")


@cuda_kernel("concat")
def concat_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    out, axis = outs[0], attrs["axis"]
    outer = int(np.prod(out.shape[:axis], dtype=np.int64))
    inner = int(np.prod(out.shape[axis + 1:], dtype=np.int64))
    total = out.shape[axis]
    launches, offset = [], 0
    for x in ins:
        n = x.shape[axis]
        launches += plan_copy(x, out, (outer, n, inner), (n * inner, inner, 1),
                              (total * inner, inner, 1), dst_base=offset * inner,
                              what="concat")
        offset += n
    return launches


@cuda_kernel("upsample_nearest2d")
def upsample_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    x, out = ins[0], outs[0]
    n, c, h, w = x.shape
    sh, sw = attrs["scale"]
    dims = (n * c, h, sh, w, sw)
    return plan_copy(x, out, dims, (h * w, w, 0, 1, 0), contiguous_strides(dims),
                     what="upsample_nearest2d")
