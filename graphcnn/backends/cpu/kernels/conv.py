"""Direct convolution kernels: forward, input gradient and weight gradient.

Each parallel task owns one output plane (forward: an (n, o) plane; input gradient: an
(n, c) plane; weight gradient: an (o, c) filter), so no two threads write one element.
The innermost loop runs along the output row over the columns where the kernel tap lands
inside the input, so there is no bounds test per element. These are the correct, parallel
baseline; the blocked, register-tiled kernels come with the kernel-speed work."""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu import autotune
from graphcnn.backends.cpu.kernels import (conv_gemm, depthwise, implicit_gemm, packed_gemm,
                                          winograd, winograd_weight_grad)
from graphcnn.backends.cpu.kernels.window import axpy, dot, fill
from graphcnn.backends.cpu.kernels.window import col_range as _col_range
from graphcnn.backends.cpu.registry import JIT, TASK_JIT, cpu_kernel, launch, recording
from graphcnn.ops.conv_shapes import (conv_operands, is_depthwise_3x3, is_full_window,
                                      is_pointwise, is_unpadded_unit_stride)


@numba.njit(**TASK_JIT)
def conv2d_task(task, x, w, bias, has_bias, out, sh, sw, pt, pl, dh, dw, groups):
    """One output plane out[n, o], task = n * O + o."""
    in_h, in_w = x.shape[2], x.shape[3]
    o_len, cg, kh, kw = w.shape
    oh_len, ow_len = out.shape[2], out.shape[3]
    n, o = task // o_len, task % o_len
    g = o // (o_len // groups)
    b = bias[o] if has_bias else 0.0
    xf, of = x.reshape(x.size), out.reshape(out.size)
    out0 = task * oh_len * ow_len
    fill(of, out0, oh_len * ow_len, b)
    for ci in range(cg):
        x0 = (n * x.shape[1] + g * cg + ci) * in_h * in_w
        for i in range(kh):
            for j in range(kw):
                wv = w[o, ci, i, j]
                off_x = j * dw - pl
                lo, hi = _col_range(off_x, sw, in_w, ow_len)
                for oy in range(oh_len):
                    iy = oy * sh - pt + i * dh
                    if iy < 0 or iy >= in_h:
                        continue
                    axpy(of, out0 + oy * ow_len + lo, 1,
                         xf, x0 + iy * in_w + lo * sw + off_x, sw, hi - lo, wv)


@numba.njit(**JIT)
def _conv2d(x, w, bias, has_bias, out, sh, sw, pt, pl, dh, dw, groups):
    for task in prange(out.shape[0] * out.shape[1]):
        conv2d_task(task, x, w, bias, has_bias, out, sh, sw, pt, pl, dh, dw, groups)


@numba.njit(**JIT)
def _conv2d_wide(x, w, bias, has_bias, out, groups):
    """conv2d_task's result for stride 1 without padding or dilation, with each tap one
    long loop: output (oy, ox) reads tap (i, j) at input element q + i*W + j with q =
    oy*W + ox, so the output rows laid end to end, W wide (the kw - 1 columns past each
    row's end are computed and thrown away), make one vectorized axpy per tap instead of
    OH short ones (LeNet-5's c1: 25 loops of 752 instead of 700 of 28)."""
    n_len, c_len, in_h, in_w = x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    o_len, cg, kh, kw = w.shape
    oh_len, ow_len = out.shape[2], out.shape[3]
    span = (oh_len - 1) * in_w + ow_len  # the last row stops at its last real column
    xf, of, wf = x.reshape(x.size), out.reshape(out.size), w.reshape(w.size)
    for task in prange(n_len * o_len):
        n, o = task // o_len, task % o_len
        g = o // (o_len // groups)
        wide = np.empty(span, out.dtype)
        b = bias[o] if has_bias else wide.dtype.type(0)
        for q in range(span):
            wide[uint64(q)] = b
        for ci in range(cg):
            x0 = (n * c_len + g * cg + ci) * in_h * in_w
            for i in range(kh):
                for j in range(kw):
                    wv = wf[uint64(((o * cg + ci) * kh + i) * kw + j)]
                    s0 = x0 + i * in_w + j
                    for q in range(span):
                        wide[uint64(q)] += wv * xf[uint64(s0 + q)]
        o0 = task * oh_len * ow_len
        for oy in range(oh_len):
            for ox in range(ow_len):
                of[uint64(o0 + oy * ow_len + ox)] = wide[uint64(oy * in_w + ox)]


@numba.njit(**TASK_JIT)
def conv2d_input_grad_task(task, dy, w, dx, sh, sw, pt, pl, dh, dw, groups):
    """One input-gradient plane dx[n, c], task = n * C + c."""
    c_len, in_h, in_w = dx.shape[1], dx.shape[2], dx.shape[3]
    o_len, cg, kh, kw = w.shape
    oh_len, ow_len = dy.shape[2], dy.shape[3]
    og = o_len // groups
    n, c = task // c_len, task % c_len
    g, ci = c // cg, c % cg
    dxf, dyf = dx.reshape(dx.size), dy.reshape(dy.size)
    dx0 = task * in_h * in_w
    fill(dxf, dx0, in_h * in_w, 0.0)
    for oo in range(og):
        o = g * og + oo
        dy0 = (n * o_len + o) * oh_len * ow_len
        for i in range(kh):
            for j in range(kw):
                wv = w[o, ci, i, j]
                off_x = j * dw - pl
                lo, hi = _col_range(off_x, sw, in_w, ow_len)
                for oy in range(oh_len):
                    iy = oy * sh - pt + i * dh
                    if iy < 0 or iy >= in_h:
                        continue
                    axpy(dxf, dx0 + iy * in_w + lo * sw + off_x, sw,
                         dyf, dy0 + oy * ow_len + lo, 1, hi - lo, wv)


@numba.njit(**JIT)
def _conv2d_input_grad(dy, w, dx, sh, sw, pt, pl, dh, dw, groups):
    for task in prange(dx.shape[0] * dx.shape[1]):
        conv2d_input_grad_task(task, dy, w, dx, sh, sw, pt, pl, dh, dw, groups)


# Reassociation lets LLVM split the dot products' float64 sums into vector lanes (3x here);
# the sums then differ from the serial order by rounding only.
@numba.njit(fastmath={"reassoc", "contract"}, **TASK_JIT)
def conv2d_weight_grad_task(task, dy, x, dw_out, sh, sw, pt, pl, dh, dw, groups):
    """One filter dw[o, ci], task = o * (C / groups) + ci."""
    n_len, in_h, in_w = x.shape[0], x.shape[2], x.shape[3]
    o_len, cg, kh, kw = dw_out.shape
    oh_len, ow_len = dy.shape[2], dy.shape[3]
    og = o_len // groups
    o, ci = task // cg, task % cg
    c = (o // og) * cg + ci
    dyf, xf = dy.reshape(dy.size), x.reshape(x.size)
    for i in range(kh):
        for j in range(kw):
            off_x = j * dw - pl
            lo, hi = _col_range(off_x, sw, in_w, ow_len)
            total = 0.0  # float64: sums over the whole batch
            for n in range(n_len):
                dy0 = (n * o_len + o) * oh_len * ow_len
                x0 = (n * x.shape[1] + c) * in_h * in_w
                for oy in range(oh_len):
                    iy = oy * sh - pt + i * dh
                    if iy < 0 or iy >= in_h:
                        continue
                    total += dot(dyf, dy0 + oy * ow_len + lo,
                                 xf, x0 + iy * in_w + lo * sw + off_x, sw, hi - lo)
            dw_out[o, ci, i, j] = total


@numba.njit(**JIT)
def _conv2d_weight_grad(dy, x, dw_out, sh, sw, pt, pl, dh, dw, groups):
    for task in prange(dw_out.shape[0] * dw_out.shape[1]):
        conv2d_weight_grad_task(task, dy, x, dw_out, sh, sw, pt, pl, dh, dw, groups)


_NO_BIAS = {np.dtype(np.float32): np.zeros(1, np.float32),
            np.dtype(np.float64): np.zeros(1, np.float64)}


def _geometry(attrs: dict[str, Any]) -> tuple[int, ...]:
    (sh, sw), pads, (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    return (sh, sw, pads[0], pads[2], dh, dw, attrs["groups"])


def conv2d_args(ins: list[np.ndarray], out: np.ndarray, attrs: dict[str, Any]) -> tuple:
    """The arguments of conv2d_task after `task` (also used by fused kernels)."""
    x, w = ins[0], ins[1]
    has_bias = len(ins) == 3
    return (x, w, ins[2] if has_bias else _NO_BIAS[x.dtype], has_bias, out) + _geometry(attrs)


def conv2d_input_grad_args(ins: list[np.ndarray], out: np.ndarray, attrs: dict[str, Any]
                           ) -> tuple:
    return (ins[0], ins[1], out) + _geometry(attrs)


def conv2d_weight_grad_args(ins: list[np.ndarray], out: np.ndarray, attrs: dict[str, Any]
                            ) -> tuple:
    return (ins[0], ins[1], out) + _geometry(attrs)


# (op, shapes, dtype, frozen, geometry, threads) -> the algorithm run_as_gemm runs, or None
# for the direct kernel: deciding costs ~30 us of Python per call (the cost model, the
# candidates, autotune's key), as much as a small layer's GEMM (MobileNetV2's 1x1 convs).
# Cleared by forget_choices (the tests do, before each test, as they patch the cost model).
_CHOSEN: dict[tuple, str | None] = {}


def forget_choices() -> None:
    _CHOSEN.clear()


def run_as_gemm(op: str, ins: list[np.ndarray], out: np.ndarray, attrs: dict[str, Any]) -> bool:
    """Compute `op` (without its bias) by GEMMs (im2col + GEMM, Winograd, or the packed-
    weights GEMM) if the cost model prefers them; False leaves the work to the direct
    kernel. Fused groups call this too. Where several algorithms fit, autotune.py measures
    which is fastest."""
    if op not in GEMM_CONVS:
        return False
    # The weight gradient's second operand is the input x, not a weight.
    frozen = op != "conv2d_weight_grad" and not ins[1].flags.writeable
    memo = (op, ins[0].shape, ins[1].shape, out.shape, out.dtype.char, frozen,
            attrs["stride"], attrs["padding"], attrs["dilation"], attrs["groups"],
            numba.get_num_threads())
    name = _CHOSEN.get(memo, "")
    if name == "" or recording():
        name = _choose(op, ins, out, attrs, frozen)  # may run (and time) the candidates
        _CHOSEN[memo] = name
    if name is None:
        return False
    _RUNS[name](op)(ins[0], ins[1], out, attrs)
    return True


def _choose(op: str, ins: list[np.ndarray], out: np.ndarray, attrs: dict[str, Any],
            frozen: bool) -> str | None:
    x_shape, w_shape, out_hw = conv_operands(op, [a.shape for a in ins], out.shape)
    if not conv_gemm.use_gemm(x_shape, w_shape, out_hw, attrs):
        return None
    names = algorithms(op, x_shape, w_shape, out_hw, attrs, out.dtype, frozen)
    candidates = {name: (lambda run=_RUNS[name](op): run(ins[0], ins[1], out, attrs))
                  for name in names}
    key = algorithm_key(x_shape, w_shape, attrs, out.dtype.str, frozen)
    return autotune.pick(op, key, candidates, default_algorithm(names))


# algorithm -> op -> its function, called as f(ins[0], ins[1], out, attrs); looked up at
# each call, so tests may patch the modules' functions.
_RUNS = {
    "gemm": lambda op: getattr(conv_gemm, GEMM_CONVS[op][0]),
    "winograd": lambda op: getattr(winograd_weight_grad if op == "conv2d_weight_grad"
                                   else winograd, GEMM_CONVS[op][1]),
    "winograd-packed": lambda op: winograd.conv2d_winograd_packed,
    "packed": lambda op: packed_gemm.conv2d_packed,
    "packed-channels": lambda op: packed_gemm.conv2d_packed_channels,
    "implicit": lambda op: implicit_gemm.conv2d_implicit_gemm,
}


def algorithms(op: str, x_shape: tuple[int, ...], w_shape: tuple[int, ...],
               out_hw: tuple[int, ...], attrs: dict[str, Any], dtype: Any, frozen: bool
               ) -> list[str]:
    """The algorithms that may compute this GEMM-sized conv op: 'gemm' (im2col + OpenBLAS)
    always; 'winograd' and the packed-weights GEMM, pixels or output channels in the vector
    lanes ('packed', 'packed-channels'), and that GEMM's microkernel reading the padded
    image through a table of tap offsets ('implicit', no im2col; not for a 1x1 stride-1
    unpadded conv, which reads the image itself already), where they apply; and for a float32
    forward conv Winograd with its products on that GEMM ('winograd-packed', even for few
    tiles: it does not pack U again per block)."""
    names = ["gemm"]
    if winograd_fits(op, x_shape, w_shape, out_hw, attrs, np.dtype(dtype).itemsize, frozen):
        names.append("winograd")
    if op == "conv2d" and winograd.packed_applies(x_shape, w_shape, attrs, dtype):
        names.append("winograd-packed")
    if op == "conv2d" and packed_fits(x_shape, w_shape, dtype, attrs):
        names += ["packed", "packed-channels"]
        if not is_pointwise(w_shape, attrs):
            names.append("implicit")
    return names


def default_algorithm(names: list[str]) -> str:
    """The cost model's choice (GRAPHCNN_AUTOTUNE=0): Winograd wherever it is a candidate
    (its blocks wide enough), else im2col; the packed GEMM only when measured."""
    return "winograd" if "winograd" in names else "gemm"


# op -> (its im2col + GEMM function in conv_gemm.py, its Winograd one in winograd.py or,
# the weight gradient's, winograd_weight_grad.py), each called as f(ins[0], ins[1], out,
# attrs).
GEMM_CONVS = {
    "conv2d": ("conv2d_gemm", "conv2d_winograd"),
    "conv2d_input_grad": ("conv2d_input_grad_gemm", "conv2d_input_grad_winograd"),
    "conv2d_weight_grad": ("conv2d_weight_grad_gemm", "conv2d_weight_grad_winograd"),
}


def winograd_fits(op: str, x_shape: tuple[int, ...], w_shape: tuple[int, ...],
                  out_hw: tuple[int, ...], attrs: dict[str, Any], itemsize: int,
                  frozen: bool) -> bool:
    """Whether Winograd is a candidate for this conv op. Each runs as a forward-shaped
    Winograd conv; the input gradient's maps the O channels of dy to the input's H, W."""
    threads = numba.get_num_threads()
    if op == "conv2d_input_grad":
        return winograd.input_grad_applies(w_shape, attrs) and winograd.worth_trying(
            x_shape[0], x_shape[2:], w_shape[0], itemsize, threads, frozen)
    return winograd.applies(x_shape, w_shape, attrs) and winograd.worth_trying(
        x_shape[0], out_hw, x_shape[1], itemsize, threads, frozen)


def packed_fits(x_shape: tuple[int, ...], w_shape: tuple[int, ...], dtype: Any,
                attrs: dict[str, Any]) -> bool:
    """Whether the packed-weights microkernel GEMM (packed_gemm.py) is a candidate: float32,
    one group, not a window as large as the input (one dense GEMM already)."""
    return (np.dtype(dtype) == np.float32 and attrs["groups"] == 1
            and not is_full_window(x_shape, w_shape, attrs))


def algorithm_key(x_shape: tuple[int, ...], w_shape: tuple[int, ...], attrs: dict[str, Any],
                  dtype: str, frozen: bool) -> tuple:
    """Everything a conv op's speed depends on: autotune's key."""
    geometry = tuple((k, tuple(attrs[k]) if isinstance(attrs[k], (list, tuple)) else attrs[k])
                     for k in ("stride", "padding", "dilation", "groups"))
    return (tuple(x_shape), tuple(w_shape), geometry, dtype, "frozen" if frozen else "live")


def chosen_algorithm(op: str, in_shapes: list[tuple[int, ...]], out_shape: tuple[int, ...],
                     attrs: dict[str, Any], dtype: str, frozen: bool) -> str:
    """One of `algorithms(...)`: what run_as_gemm picked (or would pick) for a conv the cost
    model sends to GEMMs, measuring nothing (the profile's algorithm column)."""
    x_shape, w_shape, out_hw = conv_operands(op, in_shapes, out_shape)
    names = algorithms(op, x_shape, w_shape, out_hw, attrs, dtype, frozen)
    if len(names) == 1:
        return names[0]
    key = algorithm_key(x_shape, w_shape, attrs, np.dtype(dtype).str, frozen)
    return autotune.known(op, key, names, default=default_algorithm(names))


@cpu_kernel("conv2d")
def conv2d_kernel(ins: list[np.ndarray], outs: list[np.ndarray], attrs: dict[str, Any]) -> None:
    if run_as_gemm("conv2d", ins, outs[0], attrs):
        if len(ins) == 3:
            from graphcnn.backends.cpu.kernels.conv_gemm import add_channel_bias
            out = outs[0]  # seen as (N, C, 1, H*W): one long vectorized loop per plane
            launch(add_channel_bias, out.reshape(out.shape[0], out.shape[1], 1, -1), ins[2])
        return
    args = conv2d_args(ins, outs[0], attrs)
    if is_depthwise_3x3(ins[0].shape[1], ins[1].shape, attrs):
        depthwise.conv2d_depthwise3x3(*args[:5], attrs)
        return
    if is_unpadded_unit_stride(attrs):
        launch(_conv2d_wide, *args[:5], attrs["groups"])
        return
    launch(_conv2d, *args)


@cpu_kernel("conv2d_input_grad")
def conv2d_input_grad_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                             attrs: dict[str, Any]) -> None:
    if not run_as_gemm("conv2d_input_grad", ins, outs[0], attrs):
        launch(_conv2d_input_grad, *conv2d_input_grad_args(ins, outs[0], attrs))


@cpu_kernel("conv2d_weight_grad")
def conv2d_weight_grad_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                              attrs: dict[str, Any]) -> None:
    if not run_as_gemm("conv2d_weight_grad", ins, outs[0], attrs):
        launch(_conv2d_weight_grad, *conv2d_weight_grad_args(ins, outs[0], attrs))
