"""Depthwise 3x3 convolution (groups == channels, one filter per channel: MobileNet's),
forward; its gradients are in depthwise_grad.py, through the same scratch layouts.

The generic direct kernel sweeps the whole output plane once per tap (nine passes, and a
bounds computation per row and tap). Here each plane is first copied into a zero-padded
scratch plane (per thread, in cache), so no window needs a bounds test; the nine weights
are scalars held for the plane, and each output is the nine taps' sum in a register,
computed in fixed blocks of 16 that LLVM turns into whole AVX-512 operations. A plane goes
one of three ways:

- rows of 48 outputs or more (MobileNet's 112x112 and 56x56 layers): row by row as its
  input rows arrive, straight into the output (_rolling_task);
- stride 1 and padding 1 with shorter rows (7x7 to 28x28): the plane flat, between zero
  margins, the taps past an edge column masked (_flat_task);
- otherwise: the whole plane through the phase layout below (depthwise3x3_task).
"""
from __future__ import annotations

import functools
from typing import Any

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu.kernels.grad_mask import Mask, mask_arguments, mask_plane
from graphcnn.backends.cpu.registry import JIT, TASK_JIT, launch

# The plane is copied into a zero-padded scratch split into stride phases, laid out
# [column phase][row phase][row][column] with rows of `phase_len` elements: the input of
# output (oy, ox) at tap (i, j) then sits at q + offset(i, j) with q = oy * phase_len + ox.
# One flat loop over q computes every output (and a few columns past each row's end, which
# are thrown away) with unit-stride loads and no bounds test: LLVM fills whole vectors even
# when the rows are 7 wide (MobileNet's last layers), which a loop along one row cannot.

LANES = 16  # one AVX-512 vector of float32
# Output rows from which the forward kernel computes a plane row by row as its input rows
# arrive (_rolling_task): below, the plane is in cache anyway, and the whole-plane loop
# measured faster (28x28 planes: 1.2 against 1.4 ms over 16 x 192 channels).
ROLLING_FROM = 3 * LANES


@numba.njit(inline="always")
def scratch_geometry(oh_len, ow_len, sh, sw):
    """(rows per row phase, columns per column phase, scratch length)."""
    ph, pw = (oh_len - 1) * sh + 3, (ow_len - 1) * sw + 3
    rows, phase_len = (ph + sh - 1) // sh, (pw + sw - 1) // sw
    # Slack at the end: the last row's thrown-away columns, and the last block of LANES,
    # read past it.
    return rows, phase_len, sw * sh * rows * phase_len + 2 + LANES


@numba.njit(inline="always")
def _wide_len(oh_len, phase_len):
    """The outputs computed per plane, rows phase_len long, in whole blocks of LANES."""
    return (oh_len * phase_len + LANES - 1) // LANES * LANES


@numba.njit(inline="always")
def _offset(i, j, sh, sw, rows, phase_len):
    """Where tap (i, j) of output 0 sits in the scratch: row phase i % sh, row i // sh;
    column phase j % sw, column j // sw."""
    return (((j % sw) * sh + i % sh) * rows + i // sh) * phase_len + j // sw


@numba.njit(inline="always")
def tap_offsets(sh, sw, rows, phase_len):
    """The nine taps' offsets, row by row."""
    return (_offset(0, 0, sh, sw, rows, phase_len), _offset(0, 1, sh, sw, rows, phase_len),
            _offset(0, 2, sh, sw, rows, phase_len), _offset(1, 0, sh, sw, rows, phase_len),
            _offset(1, 1, sh, sw, rows, phase_len), _offset(1, 2, sh, sw, rows, phase_len),
            _offset(2, 0, sh, sw, rows, phase_len), _offset(2, 1, sh, sw, rows, phase_len),
            _offset(2, 2, sh, sw, rows, phase_len))


@numba.njit(inline="always")
def _phase_span(cp, pl, sw, in_w, phase_len):
    """Positions k of column phase cp that hold input: padded column cp + k * sw is input
    column cp + k * sw - pl."""
    return max(0, (pl - cp + sw - 1) // sw), min(phase_len, (in_w + pl - cp + sw - 1) // sw)


@numba.njit(**TASK_JIT)
def fill_phases(xf, x0, in_h, in_w, pt, pl, sh, sw, rows, phase_len, pad, clear):
    """pad = the plane at xf[x0:] with pt rows and pl columns of zeros before it, in the
    phase layout above. Every fill of one geometry writes the same positions, so the zeros
    need writing (`clear`) only on a scratch's first fill: for a 7x7 plane the clearing
    was as many stores as the copy."""
    fill_plane(xf, x0, in_h, in_w, pt, pl, sh, sw, rows, phase_len, pad, clear)


@numba.njit(inline="always")
def fill_plane(xf, x0, in_h, in_w, pt, pl, sh, sw, rows, phase_len, pad, clear):
    """fill_phases, inlined where it runs once per plane (a call per plane is an atomic
    reference-count update of `pad` that the threads fight over)."""
    if clear:
        pad[:] = 0
    for r in range(pt, min(pt + in_h, sh * rows)):
        fill_padded_row(xf, x0, r, in_h, in_w, pt, pl, sh, sw, rows, phase_len, pad)


@numba.njit(inline="always")
def fill_padded_row(xf, x0, r, in_h, in_w, pt, pl, sh, sw, rows, phase_len, pad):
    """Padded row r of the plane at xf[x0:] into the scratch (fill_phases, one row; a row
    of the padding stays as cleared)."""
    iy = r - pt
    if iy < 0 or iy >= in_h:
        return
    row0 = (r % sh * rows + r // sh) * phase_len
    src = x0 + iy * in_w - pl
    if sw == 2:
        _fill_row_stride2(xf, src, pl, in_w, phase_len, pad, row0,
                          row0 + sh * rows * phase_len)
        return
    for cp in range(sw):
        k_lo, k_hi = _phase_span(cp, pl, sw, in_w, phase_len)
        d0 = row0 + cp * sh * rows * phase_len
        for k in range(k_lo, k_hi):
            pad[uint64(d0 + k)] = xf[uint64(src + cp + k * sw)]


@numba.njit(inline="always")
def _channel_weights(wf, c):
    """Channel c's nine weights, row by row, held in registers for its planes."""
    k0 = c * 9
    return (wf[uint64(k0)], wf[uint64(k0 + 1)], wf[uint64(k0 + 2)], wf[uint64(k0 + 3)],
            wf[uint64(k0 + 4)], wf[uint64(k0 + 5)], wf[uint64(k0 + 6)], wf[uint64(k0 + 7)],
            wf[uint64(k0 + 8)])


@numba.njit(inline="always")
def _tap_sum(pad, q, b, w00, w01, w02, w10, w11, w12, w20, w21, w22, p0, p1, p2, p3, p4, p5,
             p6, p7, p8):
    """Output q of the phase layout: the bias, then the taps row by row (the flat path's
    order too: every path gives the same bits)."""
    return (b + w00 * pad[uint64(p0 + q)] + w01 * pad[uint64(p1 + q)]
            + w02 * pad[uint64(p2 + q)] + w10 * pad[uint64(p3 + q)]
            + w11 * pad[uint64(p4 + q)] + w12 * pad[uint64(p5 + q)]
            + w20 * pad[uint64(p6 + q)] + w21 * pad[uint64(p7 + q)]
            + w22 * pad[uint64(p8 + q)])


def runs_flat(in_shape: tuple[int, ...], out_shape: tuple[int, ...], sh: int, sw: int,
              pt: int, pl: int) -> bool:
    """Whether a plane runs flat (_flat_task): stride 1, one pixel of padding all round,
    planes of at least one vector but rows too short to run rolling."""
    return (sh == sw == pt == pl == 1 and tuple(in_shape[2:]) == tuple(out_shape[2:])
            and out_shape[2] * out_shape[3] >= LANES and out_shape[3] < ROLLING_FROM)


@functools.lru_cache(maxsize=64)
def column_masks(ow_len: int, size: int, flat: bool) -> tuple[np.ndarray, np.ndarray]:
    """For a plane that runs flat, per flat position (size of them, rows ow_len long):
    whether it has a left neighbour in its row, and a right one; else one-element
    placeholders. Made once per geometry (the kernels only read them)."""
    if not flat:
        return np.zeros(1, np.bool_), np.zeros(1, np.bool_)
    column = np.arange(size) % ow_len
    return column != 0, column != ow_len - 1


@numba.njit(inline="always")
def _flat_task(task, xf, wf, bias, has_bias, zero, of, c_len, size, ow_len, pad, clear, left,
               right):
    """depthwise3x3_task's plane at stride 1 and padding 1 where its rows are short (7x7 to
    28x28): the plane is copied whole into the scratch, between margins of zeros a row and
    one element long, and each output is computed at its flat position: the tap above or
    below reads the row there (or the margin), and a tap left or right of the plane's edge
    column reads 0 where its column mask says so (the padding, as the reference multiplies
    it). The copy in and the stores are whole vectors, where the phase layout copies each
    short row alone: 16 x 960 planes of 7x7 took 0.46 ms this way against 1.3 ms."""
    margin = ow_len + 1
    if clear:
        pad[:] = 0
    x0, o0, c = task * size, task * size, task % c_len
    for i in range(size):
        pad[uint64(margin + i)] = xf[uint64(x0 + i)]
    b = bias[c] if has_bias else zero
    w00, w01, w02, w10, w11, w12, w20, w21, w22 = _channel_weights(wf, c)
    last = size - LANES
    for q0 in range(0, last + LANES, LANES):
        q0 = min(q0, last)  # the last block ends at the plane's end (overlapping)
        for lane in range(LANES):
            i = q0 + lane
            up, mid, down = margin + i - ow_len, margin + i, margin + i + ow_len
            lt, rt = left[uint64(i)], right[uint64(i)]
            of[uint64(o0 + i)] = (
                b + w00 * (pad[uint64(up - 1)] if lt else zero) + w01 * pad[uint64(up)]
                + w02 * (pad[uint64(up + 1)] if rt else zero)
                + w10 * (pad[uint64(mid - 1)] if lt else zero) + w11 * pad[uint64(mid)]
                + w12 * (pad[uint64(mid + 1)] if rt else zero)
                + w20 * (pad[uint64(down - 1)] if lt else zero) + w21 * pad[uint64(down)]
                + w22 * (pad[uint64(down + 1)] if rt else zero))


@numba.njit(inline="always")
def _fill_row_stride2(xf, src, pl, in_w, phase_len, pad, even0, odd0):
    """One row split into its even and odd padded columns. Where both phases hold input,
    one loop reads each pair of neighbours together: LLVM turns that into vector loads and
    shuffles, where a loop per phase is a gather per element (MobileNetV2's stride-2
    layers spent most of their time here)."""
    lo_e, hi_e = _phase_span(0, pl, 2, in_w, phase_len)
    lo_o, hi_o = _phase_span(1, pl, 2, in_w, phase_len)
    lo, hi = max(lo_e, lo_o), min(hi_e, hi_o)
    for k in range(lo_e, min(lo, hi_e)):
        pad[uint64(even0 + k)] = xf[uint64(src + 2 * k)]
    for k in range(lo_o, min(lo, hi_o)):
        pad[uint64(odd0 + k)] = xf[uint64(src + 2 * k + 1)]
    for k in range(lo, hi):
        pad[uint64(even0 + k)] = xf[uint64(src + 2 * k)]
        pad[uint64(odd0 + k)] = xf[uint64(src + 2 * k + 1)]
    for k in range(max(hi, lo_e), hi_e):
        pad[uint64(even0 + k)] = xf[uint64(src + 2 * k)]
    for k in range(max(hi, lo_o), hi_o):
        pad[uint64(odd0 + k)] = xf[uint64(src + 2 * k + 1)]


@numba.njit(inline="always")
def depthwise3x3_task(task, xf, wf, bias, has_bias, zero, of, c_len, in_h, in_w, oh_len,
                      ow_len, sh, sw, pt, pl, pad, clear, wide, masked, yf, low, high):
    """One output plane of(n, c), task = n * C + c, through this thread's scratch `pad` and
    `wide` (the outputs with each row phase_len long); `masked`: each output kept only
    where low < yf (at the output's index) < high (grad_mask.mask_plane). The arrays come
    flat: a view made here, per plane, is an atomic reference-count update that the
    threads fight over."""
    rows, phase_len, _ = scratch_geometry(oh_len, ow_len, sh, sw)
    if ow_len >= ROLLING_FROM:
        _rolling_task(task, xf, wf, bias, has_bias, zero, of, c_len, in_h, in_w, oh_len,
                      ow_len, pt, pl, sh, sw, pad, clear, rows, phase_len)
        if masked:
            mask_plane(of, yf, task * oh_len * ow_len, oh_len * ow_len, low, high)
        return
    fill_plane(xf, task * in_h * in_w, in_h, in_w, pt, pl, sh, sw, rows, phase_len, pad,
               clear)
    c, o0 = task % c_len, task * oh_len * ow_len
    b = bias[c] if has_bias else zero
    w00, w01, w02, w10, w11, w12, w20, w21, w22 = _channel_weights(wf, c)
    p0, p1, p2, p3, p4, p5, p6, p7, p8 = tap_offsets(sh, sw, rows, phase_len)
    # Blocks of a fixed LANES outputs: LLVM turns each block into whole vector operations,
    # where a plain loop over 63 outputs (a 7x7 plane) would run its scalar remainder only.
    for q0 in range(0, _wide_len(oh_len, phase_len), LANES):
        for lane in range(LANES):
            q = q0 + lane
            wide[uint64(q)] = _tap_sum(pad, q, b, w00, w01, w02, w10, w11, w12, w20, w21,
                                       w22, p0, p1, p2, p3, p4, p5, p6, p7, p8)
    for oy in range(oh_len):
        for ox in range(ow_len):
            of[uint64(o0 + oy * ow_len + ox)] = wide[uint64(oy * phase_len + ox)]
    if masked:
        mask_plane(of, yf, o0, oh_len * ow_len, low, high)


@numba.njit(**TASK_JIT)
def _rolling_task(task, xf, wf, bias, has_bias, zero, of, c_len, in_h, in_w, oh_len, ow_len,
                  pt, pl, sh, sw, pad, clear, rows, phase_len):
    """depthwise3x3_task's plane where its rows have at least LANES outputs: each output
    row is computed as soon as its last input row is in the scratch, straight into the
    output, so the plane's loads from memory, the arithmetic and the stores overlap (one
    phase after another, a 56x56 plane ran at half the memory's speed). A row's outputs go
    in blocks of LANES, the last block ending at the row's end (overlapping the one
    before: the same values written twice), so every block is whole vectors."""
    if clear:
        pad[:] = 0
    c, o0, x0 = task % c_len, task * oh_len * ow_len, task * in_h * in_w
    b = bias[c] if has_bias else zero
    w00, w01, w02, w10, w11, w12, w20, w21, w22 = _channel_weights(wf, c)
    p0, p1, p2, p3, p4, p5, p6, p7, p8 = tap_offsets(sh, sw, rows, phase_len)
    last, filled = ow_len - LANES, 0
    for oy in range(oh_len):
        # the padded rows through this output row's last tap
        while filled <= min(oy * sh + 2, sh * rows - 1):
            fill_padded_row(xf, x0, filled, in_h, in_w, pt, pl, sh, sw, rows, phase_len,
                            pad)
            filled += 1
        r0, d0 = oy * phase_len, o0 + oy * ow_len
        for ox0 in range(0, last + LANES, LANES):
            ox0 = min(ox0, last)
            for lane in range(LANES):
                q = r0 + ox0 + lane
                of[uint64(d0 + ox0 + lane)] = _tap_sum(
                    pad, q, b, w00, w01, w02, w10, w11, w12, w20, w21, w22, p0, p1, p2, p3,
                    p4, p5, p6, p7, p8)


@numba.njit(**JIT)
def _depthwise3x3(x, w, bias, has_bias, out, sh, sw, pt, pl, blocks, masked, y, low, high,
                  left, right):
    c_len, in_h, in_w = x.shape[1], x.shape[2], x.shape[3]
    oh_len, ow_len = out.shape[2], out.shape[3]
    planes = out.shape[0] * c_len
    rows, phase_len, pad_len = scratch_geometry(oh_len, ow_len, sh, sw)
    xf, of, wf = x.reshape(x.size), out.reshape(out.size), w.reshape(w.size)
    yf = y.reshape(y.size)
    blocks = min(planes, blocks)
    for block in prange(blocks):
        pad, wide = np.empty(pad_len, x.dtype), np.empty(_wide_len(oh_len, phase_len), x.dtype)
        # The sums stay in the output's precision (a float64 0.0 would widen them).
        zero = np.zeros(1, out.dtype)[0]
        first = block * planes // blocks
        if left.size > 1:  # runs_flat; inlined: a call per plane costs as much as its work
            for task in range(first, (block + 1) * planes // blocks):
                _flat_task(task, xf, wf, bias, has_bias, zero, of, c_len, oh_len * ow_len,
                           ow_len, pad, task == first, left, right)
                if masked:
                    mask_plane(of, yf, task * oh_len * ow_len, oh_len * ow_len, low, high)
            continue
        for task in range(first, (block + 1) * planes // blocks):
            depthwise3x3_task(task, xf, wf, bias, has_bias, zero, of, c_len, in_h, in_w,
                              oh_len, ow_len, sh, sw, pt, pl, pad, task == first, wide,
                              masked, yf, low, high)


def conv2d_depthwise3x3(x: np.ndarray, w: np.ndarray, bias: np.ndarray, has_bias: bool,
                        out: np.ndarray, attrs: dict[str, Any], mask: Mask | None = None
                        ) -> None:
    (sh, sw), pads = attrs["stride"], attrs["padding"]
    # A few blocks of planes per thread, each with its own padded scratch plane.
    blocks = 4 * numba.get_num_threads()
    flat = runs_flat(x.shape, out.shape, sh, sw, pads[0], pads[2])
    launch(_depthwise3x3, x, w, bias, has_bias, out, sh, sw, pads[0], pads[2], blocks,
           *mask_arguments(out, mask), *column_masks(out.shape[3], out.shape[2] * out.shape[3],
                                                     flat))
