"""ONNX Resize in every mode, as interpolation matrices.

Every mode of ONNX Resize is separable over the resized axes: along one axis, output
index i reads input indexes j with weights that depend only on the sizes and the
attributes. So the resize of the H and W axes of each (n, c) plane is

    out = A_h @ x @ A_w.T     (+ E where tf_crop_and_resize extrapolates)

with A_h (out_h, in_h) and A_w (out_w, in_w) computed here once, at import time, in
float64 from the ONNX operator's formulas, and run as 1x1 `conv2d` by a constant weight
(the resized axis moved to the channels by `transpose`), ops that every backend has and
that have VJPs; the batch stays the leading axis. No kernel is specific to these modes.

Along one axis (the ONNX spec's names): scale is the axis's scale (out / in for sizes,
else the given scale or, with keep_aspect_ratio_policy, the common scale), length the
resized length the transformations divide by (scale * in, which may be fractional), x the
source coordinate of output index i:

    half_pixel            x = (i + 0.5) / scale - 0.5
    half_pixel_symmetric  x = c (1 - out / length) + (i + 0.5) / scale - 0.5,  c = in / 2
    pytorch_half_pixel    x = (i + 0.5) / scale - 0.5 if length > 1 else 0
    align_corners         x = i (in - 1) / (length - 1) if length != 1 else 0
    asymmetric            x = i / scale
    tf_half_pixel_for_nn  x = (i + 0.5) / scale
    tf_crop_and_resize    x = start (in - 1) + i (end - start) (in - 1) / (length - 1)
                          (0.5 (start + end) (in - 1) if length == 1); x outside
                          [0, in - 1] gives extrapolation_value

    nearest  j = x rounded by nearest_mode (round_prefer_floor / _ceil, floor, ceil)
    linear   w(j) = K(|x - j| s) with the triangle K(d) = max(0, 1 - d)
    cubic    w(j) = K(|x - j| s) with Keys' cubic of coefficient a (cubic_coeff_a)
             K(d) = (a + 2) d^3 - (a + 3) d^2 + 1 (d <= 1), a d^3 - 5a d^2 + 8a d - 4a (d < 2)

s is min(scale, 1) with antialias=1 (the filter widens by 1 / scale when downsampling,
and the weights are divided by their sum) and 1 otherwise. Indexes outside [0, in) read
the nearest edge pixel, or, with exclude_outside=1, get weight 0 and the others are
rescaled to sum to 1.

A NaN or Inf in the input reaches every output of its row and column here (a matrix
product multiplies it by the zero weights too), where a gather would read it only at its
neighbours.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graphcnn.dsl import constant
from graphcnn.onnx.context import ImportContext, Runtime

COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel",
                    "align_corners", "asymmetric", "tf_half_pixel_for_nn", "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
MODES = ("nearest", "linear", "cubic")


@dataclass(frozen=True)
class Options:
    """The attributes of one Resize node that shape its weights."""
    mode: str = "nearest"
    coord: str = "half_pixel"
    nearest_mode: str = "round_prefer_floor"
    cubic_a: float = -0.75
    exclude_outside: bool = False
    antialias: bool = False
    extrapolation: float = 0.0


@dataclass(frozen=True)
class AxisPlan:
    """One resized axis: sizes, the scale and resized length its coordinates use, and
    its region of interest (tf_crop_and_resize)."""
    in_size: int
    out_size: int
    scale: float
    length: float
    roi: tuple[float, float] = (0.0, 1.0)


def check_options(opts: Options) -> str | None:
    """Why these attributes cannot be imported (None when they can)."""
    if opts.mode not in MODES:
        return f"mode {opts.mode!r} is not one of {', '.join(MODES)}"
    if opts.coord not in COORDINATE_MODES:
        return f"coordinate_transformation_mode {opts.coord!r} is not supported"
    if opts.mode == "nearest" and opts.nearest_mode not in NEAREST_MODES:
        return f"nearest_mode {opts.nearest_mode!r} is not one of {', '.join(NEAREST_MODES)}"
    return None


def source_coordinates(plan: AxisPlan, coord: str) -> tuple[np.ndarray, np.ndarray]:
    """The source coordinate x of every output index, and where it lies outside the input
    (tf_crop_and_resize's extrapolation; all False for the other modes). The formulas
    keep the spec's order of operations so that halves round the same way."""
    i = np.arange(plan.out_size, dtype=np.float64)
    n, scale, length = plan.in_size, plan.scale, plan.length
    outside = np.zeros(plan.out_size, bool)
    if coord == "half_pixel":
        x = (i + 0.5) / scale - 0.5
    elif coord == "half_pixel_symmetric":
        offset = (n / 2) * (1 - plan.out_size / length)
        x = offset + (i + 0.5) / scale - 0.5
    elif coord == "pytorch_half_pixel":
        x = (i + 0.5) / scale - 0.5 if length > 1 else np.zeros_like(i)
    elif coord == "align_corners":
        x = np.zeros_like(i) if length == 1 else i * (n - 1) / (length - 1)
    elif coord == "asymmetric":
        x = i / scale
    elif coord == "tf_half_pixel_for_nn":
        x = (i + 0.5) / scale
    elif coord == "tf_crop_and_resize":
        start, end = plan.roi
        if length == 1:
            x = np.full_like(i, (end - start) * (n - 1) / 2)
        else:
            x = i * (end - start) * (n - 1) / (length - 1)
        x = x + start * (n - 1)
        outside = (x < 0) | (x > n - 1)
    else:
        raise ValueError(coord)
    return x, outside


def _nearest_index(x: np.ndarray, rule: str) -> np.ndarray:
    """x rounded to an index by nearest_mode (an integer x is itself in every mode)."""
    low = np.floor(x)
    frac = x - low
    if rule == "round_prefer_floor":
        up = frac > 0.5
    elif rule == "round_prefer_ceil":
        up = frac >= 0.5
    elif rule == "floor":
        up = np.zeros_like(frac, bool)
    elif rule == "ceil":
        up = frac > 0
    else:
        raise ValueError(rule)
    return (low + up).astype(np.int64)


def _kernel(d: np.ndarray, mode: str, a: float) -> np.ndarray:
    """The interpolation kernel at distances d >= 0."""
    if mode == "linear":
        return np.maximum(0.0, 1.0 - d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _renormalize(w: np.ndarray) -> np.ndarray:
    total = w.sum(axis=1, keepdims=True)
    return w / np.where(total == 0, 1.0, total)


def axis_matrix(plan: AxisPlan, opts: Options) -> tuple[np.ndarray, np.ndarray]:
    """(A, outside): the (out, in) float64 matrix of one axis, rows that extrapolate zero,
    and the mask of those rows."""
    x, outside = source_coordinates(plan, opts.coord)
    n, out = plan.in_size, plan.out_size
    if opts.mode == "nearest":
        cols = _nearest_index(x, opts.nearest_mode)[:, None]
        w = np.ones((out, 1))
    else:
        s = min(plan.scale, 1.0) if opts.antialias else 1.0
        radius = (1.0 if opts.mode == "linear" else 2.0) / s
        # rows that extrapolate are zeroed below: keep their window near the input
        xc = np.clip(x, -1.0, float(n))
        first = int(np.floor(xc.min() - radius)) - 1
        last = int(np.ceil(xc.max() + radius)) + 1
        cols = np.arange(first, last + 1, dtype=np.int64)[None, :].repeat(out, axis=0)
        w = _kernel(np.abs(xc[:, None] - cols) * s, opts.mode, opts.cubic_a)
        if opts.antialias:
            w = _renormalize(w)
    if opts.exclude_outside:
        w = _renormalize(np.where((cols < 0) | (cols >= n), 0.0, w))
    a = np.zeros((out, n))
    rows = np.broadcast_to(np.arange(out)[:, None], cols.shape)
    np.add.at(a, (rows, np.clip(cols, 0, n - 1)), w)   # beyond the edge: the edge pixel
    a[outside] = 0.0
    return a, outside


def extrapolation_mask(outside_h: np.ndarray, outside_w: np.ndarray,
                       value: float) -> np.ndarray | None:
    """The (out_h, out_w) constant added where tf_crop_and_resize extrapolates, or None."""
    mask = outside_h[:, None] | outside_w[None, :]
    if value == 0 or not mask.any():
        return None
    return np.where(mask, value, 0.0)


def _mix_axis1(ctx: ImportContext, x: Runtime, a: np.ndarray) -> Runtime:
    """y[:, i] = sum_j a[i, j] x[:, j]: a 1x1 convolution whose weight is `a`, so the
    batch stays the leading axis (the model compiles for any batch size too)."""
    weight = constant(a.reshape(a.shape + (1, 1)))
    return Runtime(ctx.apply("conv2d", [x.tensor, weight]), x.batch_axis)


def _transpose(ctx: ImportContext, x: Runtime, perm: tuple[int, ...]) -> Runtime:
    return Runtime(ctx.apply("transpose", [x.tensor], perm=perm), x.batch_axis)


def _is_identity(a: np.ndarray) -> bool:
    return a.shape[0] == a.shape[1] and bool(np.array_equal(a, np.eye(a.shape[0])))


def apply_matrices(ctx: ImportContext, x: Runtime, a_h: np.ndarray, a_w: np.ndarray,
                   extra: np.ndarray | None) -> Runtime:
    """A_h @ x @ A_w.T for every (n, c) plane of the N, C, H, W tensor x, plus `extra`:
    the resized axis moved to axis 1 and mixed by a 1x1 convolution."""
    y = x
    if not _is_identity(a_w):
        y = _transpose(ctx, y, (0, 3, 2, 1))              # N, W, H, C
        y = _mix_axis1(ctx, y, a_w)                       # N, W', H, C
        y = _transpose(ctx, y, (0, 3, 2, 1))              # N, C, H, W'
    if not _is_identity(a_h):
        y = _transpose(ctx, y, (0, 2, 1, 3))              # N, H, C, W'
        y = _mix_axis1(ctx, y, a_h)                       # N, H', C, W'
        y = _transpose(ctx, y, (0, 2, 1, 3))              # N, C, H', W'
    if extra is not None:
        y = ctx.binary("add", y, Runtime(constant(extra), None))
    return y
