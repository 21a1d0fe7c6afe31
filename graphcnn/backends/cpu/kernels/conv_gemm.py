"""Convolution as GEMM: im2col (a parallel Numba gather) + the BLAS SGEMM behind numpy's
matmul, per image and group; 1x1 stride-1 convolutions need no im2col at all. The two
gradients' GEMMs are in conv_gemm_grad.py; the im2col, the workspaces and the scratch
formulas they share are here.

    forward        out[n, g]  = W[g] (Og, K)   @ col(x[n, g]) (K, P)
    weight grad    dW[g]     += dy[n, g] (Og, P) @ col(x[n, g]).T       (conv_gemm_grad.py)
    input grad     dx[n, g]   = col2im( W[g].T (K, Og) @ dy[n, g] (Og, P) )

with K = C/groups * kH * kW and P = OH * OW; large images are cut into cache blocks of
pixels ("blocked" in this file means that, not the NCHW16c layout of nchw16c*.py). The
direct kernels in conv.py stay for the small and the grouped/depthwise cases, where a GEMM
has too little work per call: `use_gemm` is the cost model the cpu strategy
(backends/cpu/strategy.py) asks. Bias and fused epilogues run afterwards, in the generated
epilogue kernel (backends/cpu/kernels/fused.py), while the output is in cache.
"""
from __future__ import annotations

import math
import threading
from typing import Any

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu import blas
from graphcnn.backends.cpu.aligned import aligned_bytes
from graphcnn.backends.cpu.blas import matmul
from graphcnn.backends.cpu.kernels.window import col_range as _col_range
from graphcnn.backends.cpu.registry import JIT, TASK_JIT, launch
from graphcnn.ops.conv_shapes import is_full_window, is_pointwise

# Below this much work per layer (multiply-adds), the direct kernel wins; and a GEMM with
# fewer than this many output rows x reduction length is too thin to pay for im2col.
MIN_GEMM_WORK = 32_768
MIN_GEMM_SHAPE = 64
# Small images are batched into one GEMM of about this many columns (LeNet at batch 64:
# one GEMM per layer instead of 64 tiny ones), within this much scratch memory.
TARGET_COLUMNS = 4096
MAX_WORKSPACE_BYTES = 32 << 20
# An image with this many output pixels makes a wide enough GEMM alone: batching it would
# only add the scatter pass and a column buffer that spills the caches.
WIDE_ENOUGH_COLUMNS = 512
# An input gradient splits the images over the threads (conv_gemm_grad's
# _input_grad_images) where each image has at least this many output pixels. Batch 16, one process, old and new path in
# turns (median ms): ResNet-18's 128 <- 64@56 3x3/2 11.96 -> 10.3, its 1x1/2 2.13 -> 1.55,
# 256 <- 128@28 3x3/2 (196 pixels) 10.48 -> 9.83; 512 <- 256@14 (49 pixels) equal, and
# slower in another run (10.0 -> 11.1): one image's GEMM is too thin there.
INPUT_GRAD_COLUMNS = 128


def use_gemm(x_shape: tuple[int, ...], w_shape: tuple[int, ...], out_hw: tuple[int, int],
             attrs: dict[str, Any]) -> bool:
    """The cost model: whether a conv has enough work per group for a GEMM. A GEMM with
    few output rows (a depthwise conv's one per group, LeNet-5's c1 with six) or a short
    reduction spends its time in im2col and in BLAS's packing, where the direct kernel
    streams the input once; with enough of both (LeNet-5's c3, ResNet's 3x3 layers) the
    GEMM's register blocking wins."""
    out_c, per_group, kh, kw = w_shape
    og = out_c // attrs["groups"]
    k = per_group * kh * kw
    work = x_shape[0] * out_c * k * out_hw[0] * out_hw[1]
    return og >= 8 and og * k >= MIN_GEMM_SHAPE and work >= MIN_GEMM_WORK


# Images with this many output pixels are cut into cache blocks of pixels, each block's
# im2col and GEMM run back to back on one thread (_conv_blocks); a block's columns take
# about BLOCK_BYTES, to stay in a core's L2 cache (1 MiB on Zen 4) between the two.
# Smaller images keep one GEMM per image (or per batch of images) split over the threads:
# their blocks would make GEMMs too narrow (128@28's would be 196 pixels wide).
MIN_CACHE_BLOCKED_PIXELS = 1024
BLOCK_BYTES = 1 << 20


def block_count(k: int, p: int, itemsize: int) -> int:
    """Blocks of output pixels for _conv_blocks: small enough for the cache, at least 16
    pixels wide, and a multiple of the thread count so every thread gets as many."""
    threads = numba.get_num_threads()
    width = max(16, BLOCK_BYTES // (k * itemsize))
    blocks = -(-p // width)
    return max(threads, -(-blocks // threads) * threads)


def image_chunks(n_len: int, k: int, p: int, itemsize: int) -> list[tuple[int, int]]:
    """[(first image, image count)]: enough images per GEMM to make it wide."""
    if p >= WIDE_ENOUGH_COLUMNS:
        per = 1
    else:
        per = max(1, min(n_len, TARGET_COLUMNS // max(p, 1),
                         MAX_WORKSPACE_BYTES // max(k * p * itemsize, 1)))
    return [(n0, min(per, n_len - n0)) for n0 in range(0, n_len, per)]


# The copies below index flat arrays with unsigned integers and create no views in the
# loops: a view per row costs an atomic reference-count update on the shared buffer, which
# the threads fight over, and an unsigned index needs no negative-index test, so LLVM
# vectorizes the copy.

@numba.njit(**JIT)
def _im2col(x, n0, nb, c0, col, kh, kw, sh, sw, pt, pl, dh, dw, oh_len, ow_len):
    """col[(ci, i, j), (b, oy, ox)] = x[n0 + b, c0 + ci, oy*sh - pt + i*dh, ox*sw - pl + j*dw]
    (zero where that falls in the padding). One task per (image, channel, kernel row)."""
    in_h, in_w = x.shape[2], x.shape[3]
    plane, width = oh_len * ow_len, col.shape[1]
    cg_len = col.shape[0] // (kh * kw)
    xf, cf = x.reshape(x.size), col.reshape(col.size)
    for task in prange(nb * cg_len * kh):
        b, ci, i = task // (cg_len * kh), task // kh % cg_len, task % kh
        src0 = ((n0 + b) * x.shape[1] + c0 + ci) * in_h * in_w
        ylo, yhi = _col_range(i * dh - pt, sh, in_h, oh_len)
        for j in range(kw):
            off_x = j * dw - pl
            lo, hi = _col_range(off_x, sw, in_w, ow_len)
            dst0 = ((ci * kh + i) * kw + j) * width + b * plane
            if ylo > 0 or yhi < oh_len or lo > 0 or hi < ow_len:
                for q in range(plane):
                    cf[uint64(dst0 + q)] = 0
            for oy in range(ylo, yhi):
                s0 = src0 + (oy * sh - pt + i * dh) * in_w + lo * sw + off_x
                d0 = dst0 + oy * ow_len + lo
                if sw == 1:
                    for k in range(hi - lo):
                        cf[uint64(d0 + k)] = xf[uint64(s0 + k)]
                else:
                    for k in range(hi - lo):
                        cf[uint64(d0 + k)] = xf[uint64(s0 + k * sw)]


@numba.njit(**TASK_JIT)
def _im2col_block(xf, x0, in_h, in_w, cg, kh, kw, sh, sw, pt, pl, dh, dw, ow_len, q0, q1,
                  cf, c0):
    """cf[c0 + r * (q1 - q0) + q - q0] = col[r, q] for the output pixels q0 <= q < q1 of one
    image, whose channel 0 (of the group) starts at xf[x0]: the im2col columns of one block."""
    width, plane = q1 - q0, in_h * in_w
    for r in range(cg * kh * kw):
        ci, i, j = r // (kh * kw), r // kw % kh, r % kw
        dst = c0 + r * width - q0
        off_x = j * dw - pl
        lo, hi = _col_range(off_x, sw, in_w, ow_len)
        for oy in range(q0 // ow_len, (q1 - 1) // ow_len + 1):
            a, b = max(q0 - oy * ow_len, 0), min(q1 - oy * ow_len, ow_len)
            iy = oy * sh - pt + i * dh
            d0 = dst + oy * ow_len
            if iy < 0 or iy >= in_h:
                for ox in range(a, b):
                    cf[uint64(d0 + ox)] = 0
                continue
            for ox in range(a, min(b, lo)):
                cf[uint64(d0 + ox)] = 0
            for ox in range(max(a, hi), b):
                cf[uint64(d0 + ox)] = 0
            s0 = x0 + ci * plane + iy * in_w + off_x
            if sw == 1:
                for ox in range(max(a, lo), min(b, hi)):
                    cf[uint64(d0 + ox)] = xf[uint64(s0 + ox)]
            else:
                for ox in range(max(a, lo), min(b, hi)):
                    cf[uint64(d0 + ox)] = xf[uint64(s0 + ox * sw)]


if blas.AVAILABLE:
    @numba.njit(**JIT)
    def _conv_blocks(x, n, w2, out, col, kh, kw, sh, sw, pt, pl, dh, dw, oh_len, ow_len,
                     blocks):
        """out[n] = w2 @ col(x[n]) (one group) in `blocks` blocks of output pixels: each
        block's im2col columns are built right before its GEMM, on the same thread, so
        they are still in that core's cache when the GEMM reads them (and the threads
        never wait for each other between the two)."""
        c_len, in_h, in_w = x.shape[1], x.shape[2], x.shape[3]
        og, k = w2.shape
        p = oh_len * ow_len
        step = (p + blocks - 1) // blocks
        xf, cf = x.reshape(x.size), col.reshape(col.size)
        size = x.itemsize
        double = size == 8
        for blk in prange(blocks):
            q0, q1 = blk * step, min(p, (blk + 1) * step)
            if q1 <= q0:
                continue
            c0 = blk * step * k
            _im2col_block(xf, n * c_len * in_h * in_w, in_h, in_w, c_len, kh, kw, sh, sw, pt,
                          pl, dh, dw, ow_len, q0, q1, cf, c0)
            blas.gemm_call(double, False, False, og, q1 - q0, k, w2.ctypes.data, k,
                           col.ctypes.data + c0 * size, q1 - q0, 0.0,
                           out.ctypes.data + (n * og * p + q0) * size, p)


@numba.njit(**JIT)
def _scatter(res, out, n0, nb, c0):
    """out[n0 + b, c0 + o, :] = res[o, b*P:(b+1)*P] (out viewed as (N, C, P))."""
    rows, plane = res.shape[0], out.shape[2]
    for task in prange(nb * rows):
        b, o = task // rows, task % rows
        for q in range(plane):
            out[n0 + b, c0 + o, q] = res[o, b * plane + q]


@numba.njit(**JIT)
def _gather(src, res, n0, nb, c0):
    """res[o, b*P:(b+1)*P] = src[n0 + b, c0 + o, :] (src viewed as (N, C, P))."""
    rows, plane = res.shape[0], src.shape[2]
    for task in prange(nb * rows):
        b, o = task // rows, task % rows
        for q in range(plane):
            res[o, b * plane + q] = src[n0 + b, c0 + o, q]


# role -> (shape, dtype): the workspaces a kernel call takes for given shapes, in the order
# it asks for them (each kernel's *_scratch function; the cpu strategy lays them out as
# `workspace` does for its implementation's workspace need).
Scratch = dict[str, tuple[tuple[int, ...], np.dtype]]


class Workspace:
    """Scratch bytes for the kernels' workspaces, reused by every kernel call that runs on
    them (one at a time). `slots`: where the current kernel call's roles lie in `raw`."""

    __slots__ = ("raw", "slots", "top")

    def __init__(self) -> None:
        self.raw = np.empty(0, np.uint8)
        self.slots: dict[str, tuple[int, int]] = {}
        self.top = 0

    @property
    def nbytes(self) -> int:
        return int(self.raw.nbytes)


class _Current(threading.local):
    """The Workspace the kernels of each Python thread take their scratch from: its own by
    default; the runner's call context's while a graph runs (`use_workspace`), so that
    what a call holds is its context's, and two calls never share bytes."""

    def __init__(self) -> None:
        self.own = self.ws = Workspace()


_CURRENT = _Current()
WORKSPACE_ALIGN = 64  # bytes: a cache line, as the memory plan's arena


def use_workspace(ws: Workspace | None) -> Workspace:
    """Make `ws` (None: the thread's own) the workspace of this thread's kernel calls;
    returns the one it replaces, to give back."""
    current = _CURRENT
    previous = current.ws
    current.ws = ws if ws is not None else current.own
    return previous


def begin_call() -> None:
    """A new kernel call in this Python thread (the cpu runner calls it before each step):
    its workspaces are laid out from the start of the current workspace again."""
    ws = _CURRENT.ws
    ws.slots.clear()
    ws.top = 0


def workspace(role: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A scratch buffer for one role ('col', 'rows') of the current kernel call, of this
    shape and dtype: a view of the current Workspace's bytes (this thread's, or its
    graph call's; its kernels run one at a time). A call's roles lie one after the
    other, in the order it first asks for them (a role asked again takes its place
    again, if the place is large enough); the bytes grow to the largest call's and are
    reused by every call after it, so what a workspace holds is the most one kernel call
    takes (CpuRunner.workspace_bytes, `layout_bytes` of a kernel's scratch)."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize   # math.prod: no ufunc call per kernel call
    ws = _CURRENT.ws
    slot = ws.slots.get(role)
    if slot is None or slot[1] < nbytes:
        slot = ws.slots[role] = (_aligned(ws.top), nbytes)
        ws.top = slot[0] + nbytes
        if ws.raw.nbytes < ws.top:
            # The views handed out already keep the old bytes alive until they go.
            ws.raw = aligned_bytes(ws.top)   # the slots' offsets are from an aligned start
    return ws.raw[slot[0]:slot[0] + nbytes].view(dtype).reshape(shape)


def _aligned(offset: int) -> int:
    return -(-offset // WORKSPACE_ALIGN) * WORKSPACE_ALIGN


def held_workspace_bytes() -> int:
    """The scratch bytes this Python thread's own workspace holds (what kernels called
    outside a graph took; a graph's calls take their context's)."""
    return _CURRENT.own.nbytes


def release_workspaces() -> None:
    """Drop this Python thread's own scratch bytes (the next kernel call makes them
    again)."""
    own = _CURRENT.own
    own.raw = np.empty(0, np.uint8)
    own.slots.clear()
    own.top = 0


def layout_bytes(needs: dict[str, int]) -> int:
    """The bytes a call whose workspaces are `needs` (role -> bytes, in the order it asks
    for them) takes: `workspace`'s layout, each role at the next aligned offset."""
    top = 0
    for nbytes in needs.values():
        top = _aligned(top) + nbytes
    return top


def scratch_bytes(scratch: Scratch) -> dict[str, int]:
    """role -> bytes of a kernel's Scratch."""
    return {role: int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            for role, (shape, dtype) in scratch.items()}


def gemm_scratch(op: str, x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                 out_hw: tuple[int, int], attrs: dict[str, Any], dtype: Any) -> Scratch:
    """The workspaces conv2d_gemm (op 'conv2d'), conv2d_weight_grad_gemm or
    conv2d_input_grad_gemm take, x_shape the image's (the input gradient's dx), out_hw
    the output's pixels: the first chunk of images is the widest."""
    dtype = np.dtype(dtype)
    if is_full_window(x_shape, w_shape, attrs):
        return {}
    groups = attrs["groups"]
    _, _, og, k, p, chunks = _plan(x_shape, w_shape, out_hw, groups, dtype.itemsize)
    pointwise = is_pointwise(w_shape, attrs)
    if op == "conv2d_weight_grad" and pointwise:   # blas.matmul_sum's partial sums
        return {"partials": ((blas.sum_parts(x_shape[0]) - 1, og, k), dtype)}
    if op == "conv2d_input_grad" and pointwise:    # straight into dx
        return {}
    parts = image_split_parts(x_shape[0], k, p, dtype.itemsize)
    if op == "conv2d_weight_grad" and parts:          # _weight_grad_images
        return {"col": ((parts * k * p,), dtype), "partials": ((parts - 1, og, k), dtype)}
    input_parts = image_split_parts(x_shape[0], k, p, dtype.itemsize, INPUT_GRAD_COLUMNS)
    if op == "conv2d_input_grad" and input_parts and groups == 1:  # _input_grad_images
        return {"col": ((input_parts * k * p,), dtype)}
    if op == "conv2d" and groups == 1 and not pointwise and p >= MIN_CACHE_BLOCKED_PIXELS \
            and blas.AVAILABLE:
        blocks = block_count(k, p, dtype.itemsize)
        return {"col": ((k * blocks * ((p + blocks - 1) // blocks),), dtype)}
    per = chunks[0][1]
    scratch: Scratch = {"col": ((k, per * p), dtype)}
    if per > 1:
        scratch["rows"] = ((og, per * p), dtype)
    return scratch


def _geometry(attrs: dict[str, Any]) -> tuple[int, ...]:
    (sh, sw), pads, (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    return (sh, sw, pads[0], pads[2], dh, dw)


def _plan(x_shape: tuple[int, ...], w_shape: tuple[int, ...], out_hw: tuple[int, ...],
          groups: int, itemsize: int):
    n_len = x_shape[0]
    out_c, cg, kh, kw = w_shape
    og, p = out_c // groups, out_hw[0] * out_hw[1]
    k = cg * kh * kw
    return n_len, cg, og, k, p, image_chunks(n_len, k, p, itemsize)


def conv2d_gemm(x: np.ndarray, w: np.ndarray, out: np.ndarray, attrs: dict[str, Any]) -> None:
    """out = conv2d(x, w) without bias."""
    groups, (oh, ow) = attrs["groups"], out.shape[2:]
    n_len, cg, og, k, p, chunks = _plan(x.shape, w.shape, (oh, ow), groups, x.itemsize)
    w2 = w.reshape(w.shape[0], k)
    out3 = out.reshape(n_len, -1, p)
    pointwise = is_pointwise(w.shape, attrs)
    if is_full_window(x.shape, w.shape, attrs):  # out (N, O) = x (N, K) @ w2.T
        matmul(x.reshape(n_len, k), w2.T, out.reshape(n_len, -1))
        return
    if groups == 1 and not pointwise and p >= MIN_CACHE_BLOCKED_PIXELS and blas.AVAILABLE:
        blocks = block_count(k, p, x.itemsize)
        col = workspace("col", (k * blocks * ((p + blocks - 1) // blocks),), x.dtype)
        with blas.one_thread_pool():
            for n in range(n_len):
                launch(_conv_blocks, x, n, w2, out, col, *w.shape[2:], *_geometry(attrs), oh,
                       ow, blocks)
        return
    for n0, nb in chunks:
        col = workspace("col", (k, nb * p), x.dtype)
        res = workspace("rows", (og, nb * p), x.dtype) if nb > 1 else None
        for g in range(groups):
            if pointwise and nb == 1:
                src = x[n0, g * cg:(g + 1) * cg].reshape(cg, p)
            else:
                launch(_im2col, x, n0, nb, g * cg, col, *w.shape[2:], *_geometry(attrs), oh, ow)
                src = col
            weights = w2[g * og:(g + 1) * og]
            if nb == 1:
                matmul(weights, src, out3[n0, g * og:(g + 1) * og])
            else:
                matmul(weights, src, res)
                launch(_scatter, res, out3, n0, nb, g * og)


def image_split_parts(n_len: int, k: int, p: int, itemsize: int,
                      wide: int = WIDE_ENOUGH_COLUMNS) -> int:
    """How many runs of images (one per thread) conv2d_weight_grad_gemm splits the batch
    into, each image's columns built by the thread that multiplies them (_weight_grad_images):
    where each image makes a wide enough GEMM alone and every thread has an image and
    its own column buffer fits the workspace; 0 where it keeps one GEMM split over the
    threads per image (or per chunk of small images)."""
    parts = min(numba.get_num_threads(), n_len)
    if (not blas.AVAILABLE or parts < 2 or p < wide
            or parts * k * p * itemsize > MAX_WORKSPACE_BYTES):
        return 0
    return parts


@numba.njit(**JIT)
def add_channel_bias(out, bias):
    """out[n, c] += bias[c], in place."""
    c_len = out.shape[1]
    for task in prange(out.shape[0] * c_len):
        n, c = task // c_len, task % c_len
        b = bias[c]
        for y in range(out.shape[2]):
            for x in range(out.shape[3]):
                out[n, c, y, x] += b
