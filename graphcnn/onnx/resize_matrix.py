"""Resize as two matrix products: every ONNX Resize (nearest with any rounding, linear,
cubic; any coordinate_transformation_mode; antialias; exclude_outside; keep_aspect_ratio_
policy; tf_crop_and_resize with its extrapolation_value) is separable and linear in the
input along each of H and W, so it is

    y = M_h @ x @ M_w^T (+ E where tf_crop_and_resize extrapolates)

with constant (out, in) matrices computed here at import from the ONNX specification's
formulas. ops_resize.py records this where the resize2d / upsample_nearest2d kernels
(PyTorch's arithmetic) do not compute what ONNX asks, each axis as a 1x1 `conv2d` by its
matrix between two `transpose`s (the batch stays leading), which give it its gradient and
its kernels on every backend.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AxisResize:
    """How one axis is resampled: the ONNX attributes that act on it and its sizes."""
    in_size: int
    out_size: int
    scale: float                 # ONNX's scale for this axis (out / in where sizes given)
    mode: str                    # nearest, linear, cubic
    coord: str                   # coordinate_transformation_mode
    nearest_mode: str = "round_prefer_floor"
    cubic_a: float = -0.75
    exclude_outside: bool = False
    antialias: bool = False
    roi: tuple[float, float] = (0.0, 1.0)


def source_coordinates(a: AxisResize) -> tuple[np.ndarray, np.ndarray]:
    """x_original for every output index, and where it falls outside the input
    (tf_crop_and_resize only: those outputs are the extrapolation value)."""
    y = np.arange(a.out_size, dtype=np.float64)
    length = a.scale * a.in_size          # the resized length, before rounding to an int
    outside = np.zeros(a.out_size, bool)
    if a.coord == "half_pixel":
        x = (y + 0.5) / a.scale - 0.5
    elif a.coord == "half_pixel_symmetric":
        adjustment = a.out_size / length
        offset = a.in_size / 2 * (1 - adjustment)
        x = offset + (y + 0.5) / a.scale - 0.5
    elif a.coord == "pytorch_half_pixel":
        x = (y + 0.5) / a.scale - 0.5 if length > 1 else np.zeros_like(y)
    elif a.coord == "tf_half_pixel_for_nn":
        x = (y + 0.5) / a.scale
    elif a.coord == "align_corners":
        x = y * (a.in_size - 1) / (length - 1) if length > 1 else np.zeros_like(y)
    elif a.coord == "asymmetric":
        x = y / a.scale
    elif a.coord == "tf_crop_and_resize":
        start, end = a.roi
        if length > 1:
            x = start * (a.in_size - 1) + y * (end - start) * (a.in_size - 1) / (length - 1)
        else:
            x = np.full_like(y, 0.5 * (start + end) * (a.in_size - 1))
        outside = (x < 0) | (x > a.in_size - 1)
    else:
        raise ValueError(f"coordinate_transformation_mode {a.coord!r}")
    return x, outside


def _cubic(t: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with coefficient a."""
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def nearest_round(x: np.ndarray, rounding: str) -> np.ndarray:
    """ONNX Resize's nearest_mode applied to source coordinates x: int64 indices."""
    if rounding == "round_prefer_floor":
        r = np.where(x - np.floor(x) == 0.5, np.floor(x), np.round(x))
    elif rounding == "round_prefer_ceil":
        r = np.where(x - np.floor(x) == 0.5, np.ceil(x), np.round(x))
    elif rounding == "floor":
        r = np.floor(x)
    elif rounding == "ceil":
        r = np.ceil(x)
    else:
        raise ValueError(f"nearest_mode {rounding!r}")
    return r.astype(np.int64)


def axis_matrix(a: AxisResize) -> tuple[np.ndarray, np.ndarray]:
    """The (out, in) matrix of one axis (rows that extrapolate are zero) and the mask of
    those rows."""
    x, outside = source_coordinates(a)
    m = np.zeros((a.out_size, a.in_size))
    rows = np.arange(a.out_size)
    if a.mode == "nearest":
        index = nearest_round(x, a.nearest_mode)
        # exclude_outside: a pixel read beyond the edge weighs 0 and nothing is left to
        # renormalize, so the output is 0 there (as onnx's reference computes it)
        reads = ((index >= 0) & (index < a.in_size)) if a.exclude_outside else \
            np.ones(a.out_size, bool)
        m[rows[reads], np.clip(index, 0, a.in_size - 1)[reads]] = 1.0
    else:
        # the filter stretched by 1 / scale when antialiasing a reduction
        s = min(a.scale, 1.0) if a.antialias else 1.0
        support = 1.0 if a.mode == "linear" else 2.0
        half = int(math.ceil(support / s))
        # a tap window of 2 * half input indices around x; at an integer x the window
        # ends at x (the filter is zero at its far end, so only the exclusion sees it)
        base = np.where(x == np.floor(x), x - 1, np.floor(x)).astype(np.int64)
        taps = base[:, None] + np.arange(1 - half, half + 1)[None, :]
        dist = (taps - x[:, None]) * s
        w = np.maximum(1 - np.abs(dist), 0.0) if a.mode == "linear" else _cubic(dist, a.cubic_a)
        if a.antialias:
            w = w / w.sum(axis=1, keepdims=True)
        if a.exclude_outside:
            w = np.where((taps < 0) | (taps >= a.in_size), 0.0, w)
            total = w.sum(axis=1, keepdims=True)
            w = w / np.where(total == 0, 1.0, total)
        np.add.at(m, (np.repeat(rows, taps.shape[1]),
                      np.clip(taps, 0, a.in_size - 1).reshape(-1)), w.reshape(-1))
    m[outside] = 0.0
    return m, outside


def output_sizes(in_sizes: tuple[int, ...], scales: tuple[float, ...] | None,
                 sizes: tuple[int, ...] | None, policy: str) -> tuple[list[int], list[float]]:
    """ONNX's output sizes and per-axis scales of the resized axes: floor(in * scale) with
    scales; with sizes, the sizes (stretch) or one scale for every axis, the smallest
    (not_larger) or the largest (not_smaller), and round-half-up(in * scale)."""
    if sizes is None:
        assert scales is not None
        return [int(math.floor(i * s)) for i, s in zip(in_sizes, scales)], list(scales)
    ratios = [o / i for o, i in zip(sizes, in_sizes)]
    if policy == "stretch":
        return list(sizes), ratios
    common = min(ratios) if policy == "not_larger" else max(ratios)
    return [int(common * i + 0.5) for i in in_sizes], [common] * len(in_sizes)
