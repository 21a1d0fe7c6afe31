"""CPU kernels of the NCHW16c layout (the graph's *_blocked ops, graphcnn/ops/layout.py): the
two conversions, the depthwise 3x3 convolution, one entry per conv2d_blocked kernel (which
one runs a node is backends/cpu/strategy.py's choice), and the epilogues they apply.

Why the layout pays for depthwise convolutions: in NCHW each channel is its own plane, and
MobileNetV2's deep layers have many small ones (960 planes of 7x7): the NCHW kernel
(depthwise.py) sets up every plane (a padded copy, nine weights, a 49-output loop in
vectors of 16) for 441 multiply-adds. In NCHW16c one output pixel of a block is nine
whole-vector multiply-adds of the pixel's neighbours, with no setup and no copy.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types, uint64
from numba.core import cgutils
from numba.extending import intrinsic

from graphcnn.backends.cpu.aligned import aligned_empty, aligned_zeros
from graphcnn.backends.cpu.kernels import nchw16c_conv
from graphcnn.backends.cpu.kernels.nchw16c_conv import NO_EPILOGUE, Epilogue
from graphcnn.backends.cpu.kernels.vector_ir import (
    ADD_SIDE,
    CLIP,
    F32,
    LANES,
    RELU,
    VEC,
    emit_epilogue,
    i64,
    load_vector,
    store_vector,
)
from graphcnn.backends.cpu.registry import JIT, cpu_kernel, get_kernel, launch
from graphcnn.ops.layout import BLOCK, blocked_shape, in_channels

# ---- the conversions -----------------------------------------------------------------
# Both go through 16 x 16 tiles (16 channels by 16 pixels), so the reads of one side and
# the writes of the other are runs of 16 in cache.


@numba.njit(**JIT)
def _to_nchw16c(x, out):
    n_len, c_len, cb_len = x.shape[0], x.shape[1], out.shape[1]
    hw = x.shape[2] * x.shape[3]
    xf, of = x.reshape(x.size), out.reshape(out.size)
    zero = np.zeros(1, out.dtype)[0]
    for task in prange(n_len * cb_len):
        n, cb = task // cb_len, task % cb_len
        o0 = task * hw * BLOCK
        for p0 in range(0, hw, BLOCK):
            for l in range(BLOCK):
                c = cb * BLOCK + l
                src = (n * c_len + c) * hw
                for p in range(p0, min(hw, p0 + BLOCK)):
                    of[uint64(o0 + p * BLOCK + l)] = xf[uint64(src + p)] if c < c_len else zero


@numba.njit(**JIT)
def _from_nchw16c(x, out):
    n_len, c_len, cb_len = out.shape[0], out.shape[1], x.shape[1]
    hw = out.shape[2] * out.shape[3]
    xf, of = x.reshape(x.size), out.reshape(out.size)
    for task in prange(n_len * cb_len):
        n, cb = task // cb_len, task % cb_len
        x0 = task * hw * BLOCK
        for p0 in range(0, hw, BLOCK):
            for l in range(min(BLOCK, c_len - cb * BLOCK)):
                dst = (n * c_len + cb * BLOCK + l) * hw
                for p in range(p0, min(hw, p0 + BLOCK)):
                    of[uint64(dst + p)] = xf[uint64(x0 + p * BLOCK + l)]


@cpu_kernel("to_blocked")
def to_blocked_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]
                      ) -> None:
    launch(_to_nchw16c, ins[0], outs[0])


@cpu_kernel("from_blocked")
def from_blocked_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]
                        ) -> None:
    launch(_from_nchw16c, ins[0], outs[0])


# ---- depthwise 3x3 ----------------------------------------------------------------------


@intrinsic
def taps_run(typingctx, src_addr, r0, row, step, count, w_addr, b_addr, o_addr, side_addr,
             mode, low, high):
    """For i < count: o[i * 16 + l] = b[l] + sum over the nine taps t of
    w[t * 16 + l] * src[r0 + i * step + (t // 3) * row + (t % 3) * 16 + l], for the 16
    lanes l: a run of 3x3 windows along an output row of one block, in <16 x float> vector
    code with the nine weight vectors held in registers for the run. (The same as a Numba
    loop over the lanes, per window, took ~50 cycles a window: LLVM vectorized it for a
    trip count 16 lanes never reach, and the weights were loaded again at every window.)
    The epilogue (`mode`: vector_ir.emit_epilogue) reads side at o's offsets."""
    sig = types.void(types.uintp, types.int64, types.int64, types.int64, types.int64,
                     types.uintp, types.uintp, types.uintp, types.uintp, types.int64,
                     types.float32, types.float32)

    def codegen(context, builder, signature, args):
        src_int, r0, row, step, count, w_int, b_int, o_int, s_int, mode, low, high = args
        src, w, b, o, side = (builder.inttoptr(v, F32.as_pointer())
                              for v in (src_int, w_int, b_int, o_int, s_int))
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(VEC, [VEC] * 3), "llvm.fma.v16f32")
        weights = [load_vector(builder, w, i64(t * BLOCK)) for t in range(9)]
        bias = load_vector(builder, b, i64(0))
        with cgutils.for_range(builder, count) as loop:
            base = builder.add(r0, builder.mul(loop.index, step))
            acc = bias
            for t in range(9):
                at = builder.add(builder.add(base, builder.mul(row, i64(t // 3))),
                                 i64(t % 3 * BLOCK))
                acc = builder.call(fma, [weights[t], load_vector(builder, src, at), acc])
            at = builder.mul(loop.index, i64(BLOCK))
            store_vector(builder, emit_epilogue(builder, acc, side, at, mode, low, high), o, at)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _copy_vector(typingctx, src_addr, dst_addr, keep):
    """dst[l] = src[l] if keep else 0, for the 16 lanes l (src is read either way)."""
    sig = types.void(types.uintp, types.uintp, types.boolean)

    def codegen(context, builder, signature, args):
        src, dst = (builder.inttoptr(v, F32.as_pointer()) for v in args[:2])
        zero = ir.Constant(VEC, [ir.Constant(F32, 0.0)] * LANES)
        value = builder.select(args[2], load_vector(builder, src, i64(0)), zero)
        store_vector(builder, value, dst, i64(0))
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(inline="always")
def _depthwise_row(xf, x0, wf, w0, bf, b0, of, o0, oy, in_h, in_w, ow_len, sh, sw, pt, pl,
                   window, side, mode, low, high):
    """Output row oy of one block: of[o0 + ox * 16 + l] for every ox and lane l. The
    windows inside the image are one run read in place; each one over the border is first
    copied into `window` (3 x 3 x 16, zeros outside the image) and run alone. Inlined: a
    call per row passes the shared arrays, an atomic reference count the threads fight
    over."""
    iy0 = oy * sh - pt
    row = in_w * BLOCK
    # Addresses taken once: `.ctypes` counts a reference (an atomic the threads share).
    x_at, o_at, window_at = xf.ctypes.data, of.ctypes.data, window.ctypes.data
    s_at = side.ctypes.data
    w_at, b_at = wf.ctypes.data + w0 * 4, bf.ctypes.data + b0 * 4
    lo, hi = 0, 0  # the run of windows inside the image: ox in [lo, hi)
    if iy0 >= 0 and iy0 + 2 < in_h:
        lo = min(ow_len, (pl + sw - 1) // sw)
        hi = max(lo, min(ow_len, (in_w - 3 + pl) // sw + 1))
        if hi > lo:
            at = (o0 + lo * BLOCK) * 4
            taps_run(x_at, x0 + (iy0 * in_w + lo * sw - pl) * BLOCK, row, sw * BLOCK,
                     hi - lo, w_at, b_at, o_at + at, s_at + at, mode, low, high)
    for ox in range(ow_len):
        if lo <= ox < hi:
            continue
        ix0 = ox * sw - pl
        for t in range(9):
            iy, ix = iy0 + t // 3, ix0 + t % 3
            inside = iy >= 0 and iy < in_h and ix >= 0 and ix < in_w
            src = x0 + (iy * in_w + ix) * BLOCK if inside else x0  # x0: any pixel in bounds
            _copy_vector(x_at + src * 4, window_at + t * BLOCK * 4, inside)
        at = (o0 + ox * BLOCK) * 4
        taps_run(window_at, 0, 3 * BLOCK, 0, 1, w_at, b_at, o_at + at, s_at + at, mode, low,
                 high)


@numba.njit(**JIT)
def _depthwise(x, wk, bias16, out, sh, sw, pt, pl, threads, side, mode, low, high):
    """out = depthwise3x3(x) + bias in NCHW16c, wk the weights as (C/16, 9, 16); one task
    per output row of a block."""
    cb_len, in_h, in_w = x.shape[1], x.shape[2], x.shape[3]
    oh_len, ow_len = out.shape[2], out.shape[3]
    xf, of, wf = x.reshape(x.size), out.reshape(out.size), wk.reshape(wk.size)
    sf = side.reshape(side.size)
    tasks = out.shape[0] * cb_len * oh_len
    threads = min(tasks, threads)
    for thread in prange(threads):
        window = np.empty(9 * BLOCK, x.dtype)
        for task in range(thread * tasks // threads, (thread + 1) * tasks // threads):
            plane, oy = task // oh_len, task % oh_len
            cb = plane % cb_len
            _depthwise_row(xf, plane * in_h * in_w * BLOCK, wf, cb * 9 * BLOCK, bias16,
                           cb * BLOCK, of, (plane * oh_len + oy) * ow_len * BLOCK, oy, in_h,
                           in_w, ow_len, sh, sw, pt, pl, window, sf, mode, low, high)


# ---- weights and bias in the kernels' forms ----------------------------------------------

class Prepared(NamedTuple):
    """A conv's weight and bias in the forms its kernel reads: `weights` packed panels
    (nchw16c_conv.packed_weights: the 1x1 and implicit kernels) or depthwise taps
    (depthwise_weights), `bias16` the bias zero-padded to whole blocks. The cpu strategy
    makes a frozen conv's once, when its node's implementation is built; a live one's are
    made at every call."""
    weights: np.ndarray
    bias16: np.ndarray


def prepare(ins: Sequence[np.ndarray], blocks: int, dtype: Any, depthwise: bool = False,
            blocks_per_panel: int | None = None) -> Prepared:
    """The Prepared form of the conv (x, w[, bias]) `ins` into `blocks` channel blocks
    (packed panels of `blocks_per_panel` blocks: nchw16c_conv.packed_weights)."""
    w = ins[1]
    weights = (depthwise_weights(w) if depthwise
               else nchw16c_conv.packed_weights(w, blocks_per_panel))
    return Prepared(weights, padded_bias(ins, blocks, dtype))


def _padded_to_blocks(a: np.ndarray, length: int) -> np.ndarray:
    """a (C, ...) with zeros past C up to `length` along its first axis."""
    out = aligned_zeros((length,) + a.shape[1:], a.dtype)
    out[:a.shape[0]] = a
    return out


def depthwise_weights(w: np.ndarray) -> np.ndarray:
    """w (C, 1, 3, 3) as (C/16, 9, 16): tap t of channel c at [c // 16, t, c % 16]."""
    cb_len = -(-w.shape[0] // BLOCK)
    taps = _padded_to_blocks(w.reshape(w.shape[0], 9), cb_len * BLOCK)
    out = aligned_empty((cb_len, 9, BLOCK), taps.dtype)
    out[...] = taps.reshape(cb_len, BLOCK, 9).transpose(0, 2, 1)
    return out


def padded_bias(ins: list[np.ndarray], blocks: int, dtype: np.dtype) -> np.ndarray:
    """The bias ins[2] (zeros if absent) zero-padded to `blocks` whole blocks."""
    if len(ins) < 3:
        return aligned_zeros(blocks * BLOCK, dtype)
    return _padded_to_blocks(ins[2], blocks * BLOCK)


# ---- the convolutions: one function per kernel -------------------------------------------
# backends/cpu/strategy.py decides which one runs a conv2d_blocked node (its shapes: a 1x1
# or depthwise 3x3 conv on an NCHW16c input, any other float32 one-group conv, else through
# NCHW); each takes (ins, out, attrs) and, but the last, the epilogue to apply as it stores
# and `prepared`: prepare(ins, ..) made already (a frozen conv's), else made here.

def conv_pointwise(ins: list[np.ndarray], out: np.ndarray, attrs: dict[str, Any],
                   epilogue: Epilogue = NO_EPILOGUE, prepared: Prepared | None = None) -> None:
    """A float32 one-group 1x1 stride-1 unpadded conv on an NCHW16c input."""
    p = prepared or prepare(ins, out.shape[1], out.dtype)
    nchw16c_conv.conv2d_pointwise_nchw16c(ins[0], p.weights, p.bias16, out, epilogue)


def conv_depthwise(ins: list[np.ndarray], out: np.ndarray, attrs: dict[str, Any],
                   epilogue: Epilogue = NO_EPILOGUE, prepared: Prepared | None = None) -> None:
    """A float32 depthwise 3x3 conv on an NCHW16c input."""
    p = prepared or prepare(ins, out.shape[1], out.dtype, depthwise=True)
    (sh, sw), pads = attrs["stride"], attrs["padding"]
    launch(_depthwise, ins[0], p.weights, p.bias16, out, sh, sw, pads[0], pads[2],
           numba.get_num_threads(), *epilogue.args(out))


def conv_implicit(ins: list[np.ndarray], out: np.ndarray, attrs: dict[str, Any],
                  epilogue: Epilogue = NO_EPILOGUE, prepared: Prepared | None = None) -> None:
    """Any float32 one-group conv, on an NCHW16c or an NCHW input."""
    p = prepared or prepare(ins, out.shape[1], out.dtype)
    nchw16c_conv.conv2d_nchw16c_general(ins[0], ins[1], p.bias16, out, attrs, epilogue,
                                        p.weights)


class EpilogueForm(NamedTuple):
    """A fused group's steps as an Epilogue the kernels apply as they store: `mode` (bits
    ADD_SIDE, CLIP, RELU), the fused node's input added (its index; None without ADD_SIDE),
    and clip's bounds. Known from the graph; bound to the arrays at each call."""
    mode: int
    side: int | None
    low: float
    high: float

    def bind(self, ins: Sequence[np.ndarray | None]) -> Epilogue:
        return Epilogue(None if self.side is None else ins[self.side], self.mode, self.low,
                        self.high)


def epilogue_form(steps: tuple[Any, ...], in_types: list[tuple[tuple[int, ...], Any] | None],
                  out_type: tuple[tuple[int, ...], Any]) -> EpilogueForm | None:
    """The EpilogueForm a fused group's steps are, if they are one: an add of a side input
    of the output's shape and dtype (in_types: (shape, dtype) of the fused node's inputs),
    then clip or relu (either or both), in that order; else None."""
    mode, side, low, high, rest = 0, None, 0.0, 0.0, list(steps)
    refs = rest[0][2] if rest else ()
    if rest and rest[0][0] == "add" and len(refs) == 2 and -1 in refs and max(refs) >= 0:
        side = max(refs)  # add(running, side) or add(side, running): the same sum
        shape, dtype = in_types[side]
        if tuple(shape) != tuple(out_type[0]) or np.dtype(dtype) != np.dtype(out_type[1]):
            return None
        mode, rest = ADD_SIDE, rest[1:]
    if rest and rest[0][0] == "clip" and rest[0][2] == (-1,):
        mode, low, high, rest = mode | CLIP, rest[0][1]["low"], rest[0][1]["high"], rest[1:]
    elif rest and rest[0][0] == "relu" and rest[0][2] == (-1,):
        mode, rest = mode | RELU, rest[1:]
    return EpilogueForm(mode, side, low, high) if not rest and mode else None


def epilogue_of(steps: tuple[Any, ...], ins: Sequence[np.ndarray | None], out: np.ndarray
                ) -> Epilogue | None:
    """epilogue_form's Epilogue for these arrays (None where the steps are none)."""
    form = epilogue_form(steps, [None if a is None else (a.shape, a.dtype) for a in ins],
                         (out.shape, out.dtype))
    return None if form is None else form.bind(ins)


def conv_via_nchw(ins: list[np.ndarray], out: np.ndarray, attrs: dict[str, Any]) -> None:
    """Any other convolution: converted to NCHW, run by the conv2d kernel (which chooses
    its implementation at each call), converted back (correct, not fast; the layout pass
    does not make these)."""
    x, w = ins[0], ins[1]
    logical = x
    if x.ndim == 5:
        logical = np.empty((x.shape[0], in_channels(w.shape, attrs["groups"])) + x.shape[2:4],
                           x.dtype)
        launch(_from_nchw16c, x, logical)
    n, cb, oh, ow, _ = out.shape
    y = np.empty((n, w.shape[0], oh, ow), out.dtype)
    get_kernel("conv2d")([logical] + list(ins[1:]), [y], attrs)
    assert blocked_shape(y.shape) == out.shape
    launch(_to_nchw16c, y, out)
