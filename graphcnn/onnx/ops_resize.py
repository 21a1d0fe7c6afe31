"""The Resize importer: mode "nearest" where it reads the pixels PyTorch's 'nearest' reads
(`upsample_nearest2d` for integer repetition, else `resize2d`), and mode "linear" on H and
W (`resize2d` bilinear) for the coordinate transformations PyTorch's interpolate has:
"half_pixel" and "pytorch_half_pixel" (align_corners=False) and "align_corners", with
scales or sizes. Every other Resize of H and W (cubic, antialias, the other coordinate
modes and roundings, keep_aspect_ratio_policy) is two matrix products (resize_matrix.py)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphcnn.dsl import constant
from graphcnn.onnx.context import PROBES, Folded, ImportContext, Runtime
from graphcnn.onnx.errors import OnnxImportError
from graphcnn.onnx.importers import Values, importer
from graphcnn.onnx.reader import OnnxNode
from graphcnn.onnx.resize_matrix import AxisResize, axis_matrix, nearest_round, output_sizes
from graphcnn.ops.resize import axis_table

# ONNX's linear coordinate modes -> align_corners of resize2d
LINEAR_MODES = {"half_pixel": False, "pytorch_half_pixel": False, "align_corners": True}
def _nearest_index(out_size: int, in_size: int, scale: float, coord: str, rounding: str
                   ) -> np.ndarray:
    """The input index ONNX Resize reads for each output index (one axis)."""
    i = np.arange(out_size, dtype=np.float64)
    if coord == "asymmetric":
        x = i / scale
    elif coord in ("half_pixel", "pytorch_half_pixel"):
        x = (i + 0.5) / scale - 0.5
        if coord == "pytorch_half_pixel" and out_size == 1:
            x = np.zeros_like(i)
    elif coord == "align_corners":
        x = i * (in_size - 1) / (out_size - 1) if out_size > 1 else np.zeros_like(i)
    elif coord == "tf_half_pixel_for_nn":
        x = (i + 0.5) / scale
    else:
        raise ValueError(coord)
    return np.clip(nearest_round(x, rounding), 0, in_size - 1)


def _axis(ctx: ImportContext, axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ctx.error(f"axis {axis} is out of range for a {ndim}-D tensor")
    return axis % ndim


def _sizes(ctx: ImportContext, x: Runtime, sizes: Any, axes: list[int]) -> list[int]:
    """The sizes input: fixed, but for the batch axis's, which may be the input's batch
    (Shape(x)[0], as graphcnn exports it with a dynamic batch)."""
    if not isinstance(sizes, Folded) or sizes.is_static:
        return ctx.ints(sizes, "sizes")
    at = [np.asarray(v).reshape(-1) for v in sizes.values]
    if len(at[0]) != len(axes):
        raise ctx.error(f"sizes {at[0].tolist()} must have one value per axis {axes}")
    for k, a in enumerate(axes):
        varies = at[0][k] != at[1][k]
        if varies and not (a == x.batch_axis and all(
                at[i][k] == x.shape_at(p)[a] for i, p in enumerate(PROBES))):
            ctx.static(sizes, "sizes")   # the error that says what depends on the batch
    return [int(v) for v in at[0]]


def _targets(ctx: ImportContext, node: OnnxNode, ins: Values, x: Runtime
             ) -> tuple[dict[int, float], dict[int, int] | None]:
    """The scale per axis, and the sizes per axis when the node gives sizes (else None)."""
    axes = [_axis(ctx, int(a), 4) for a in node.attrs.get("axes", range(4))]
    scales = ins[2] if len(ins) > 2 else None
    sizes = ins[3] if len(ins) > 3 else None
    if scales is not None and ctx.static(scales, "scales").size:
        given = [float(v) for v in ctx.static(scales, "scales").reshape(-1)]
        if len(given) != len(axes):
            raise ctx.error(f"scales {given} must have one value per axis {axes}")
        if not all(math.isfinite(s) and s > 0 for s in given):
            raise ctx.error(f"scales {given} must be positive")
        return dict(zip(axes, given)), None
    if sizes is None:
        raise ctx.error("neither scales nor sizes is given")
    in_shape = x.tensor.type.shape
    wanted = _sizes(ctx, x, sizes, axes)
    if len(wanted) != len(axes):
        raise ctx.error(f"sizes {wanted} must have one value per axis {axes}")
    policy = node.attrs.get("keep_aspect_ratio_policy", "stretch")
    if policy not in ("stretch", "not_larger", "not_smaller"):
        raise ctx.error(f"keep_aspect_ratio_policy {policy!r} is not supported")
    if min(wanted) < 1:
        raise ctx.error(f"sizes {wanted} must be positive")
    # the batch is never resized (its size is the file's batch)
    kept_batch = tuple(in_shape[a] if a == 0 else s for a, s in zip(axes, wanted))
    out_sizes, factors = output_sizes(tuple(in_shape[a] for a in axes), None, kept_batch,
                                      policy)
    return dict(zip(axes, factors)), dict(zip(axes, out_sizes))


@importer("Resize", limits="4-D input; H and W only")
def resize(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    x = ctx.runtime(ins[0])
    mode = node.attrs.get("mode", "nearest")
    if mode not in ("nearest", "linear", "cubic"):
        raise ctx.error(f"mode {mode!r} is not supported (nearest, linear, cubic)")
    if x.ndim != 4:
        raise ctx.error(f"graphcnn resizes 4-D N, C, H, W tensors only, got "
                        f"{x.shape_at(PROBES[0])}")
    ctx.check_batch_first(x, "Resize")
    in_shape = x.tensor.type.shape
    scale, sizes = _targets(ctx, node, ins, x)
    if scale.get(0, 1.0) != 1.0 or scale.get(1, 1.0) != 1.0:
        raise ctx.error(f"graphcnn resizes H and W only; the scales "
                        f"{[scale.get(a, 1.0) for a in range(4)]} change N or C")
    coord = node.attrs.get("coordinate_transformation_mode", "half_pixel")
    # align_corners with scales maps with the unrounded in * scale (resize2d with out)
    fractional = sizes is None and any(in_shape[a] * scale.get(a, 1.0) % 1 for a in (2, 3))
    # nearest with exclude_outside reads nothing beyond the edge, where PyTorch clamps
    excluding = mode == "nearest" and bool(node.attrs.get("exclude_outside", 0))
    if mode != "cubic" and node.attrs.get("keep_aspect_ratio_policy", "stretch") == "stretch" \
            and not (coord == "align_corners" and fractional) and not excluding:
        try:   # PyTorch's kernels, where they compute what ONNX asks
            if mode == "linear":
                return [_linear(ctx, node, x, in_shape, scale, sizes)]
            return [_nearest(ctx, node, x, in_shape, scale, sizes)]
        except OnnxImportError:
            pass
    return [_by_matrices(ctx, node, ins, x, in_shape, scale, sizes)]


def _by_matrices(ctx: ImportContext, node: OnnxNode, ins: Values, x: Runtime,
                 in_shape: tuple[int, ...], scale: dict[int, float],
                 sizes: dict[int, int] | None) -> Runtime:
    """y = M_h x M_w^T (+ the extrapolation value where tf_crop_and_resize leaves the
    input): resize_matrix.py."""
    a = node.attrs
    coord = a.get("coordinate_transformation_mode", "half_pixel")
    axes = [_axis(ctx, int(v), 4) for v in a.get("axes", range(4))]
    roi = {k: (0.0, 1.0) for k in range(4)}
    if coord == "tf_crop_and_resize":
        given = [float(v) for v in ctx.static(ins[1] if len(ins) > 1 else None,
                                              "roi").reshape(-1)]
        if len(given) != 2 * len(axes):
            raise ctx.error(f"roi {given} must have 2 values per axis {axes}")
        for k, axis in enumerate(axes):
            roi[axis] = (given[k], given[k + len(axes)])
    y, inside = x, {}
    for axis in (3, 2):
        out = sizes[axis] if sizes is not None and axis in sizes else \
            int(math.floor(in_shape[axis] * scale.get(axis, 1.0)))
        if out < 1:
            raise ctx.error(f"the output size {out} of axis {axis} ({in_shape[axis]}) is empty")
        try:
            matrix, outside = axis_matrix(AxisResize(
                in_shape[axis], out, scale.get(axis, 1.0), a.get("mode", "nearest"), coord,
                a.get("nearest_mode", "round_prefer_floor"), float(a.get("cubic_coeff_a", -0.75)),
                bool(a.get("exclude_outside", 0)), bool(a.get("antialias", 0)), roi[axis]))
        except ValueError as exc:
            raise ctx.error(f"{exc} is not supported") from None
        inside[axis] = ~outside
        ctx.check_size(matrix.shape, np.float32, "the resize matrix")
        if out != in_shape[axis] or not np.array_equal(matrix, np.eye(out)):
            y = _resize_axis(ctx, y, axis, matrix)
    if not (inside[2].all() and inside[3].all()):
        value = float(a.get("extrapolation_value", 0.0))
        bias = value * (1.0 - np.outer(inside[2], inside[3])).astype(np.float32)
        y = Runtime(ctx.apply("add", [y.tensor, constant(bias)]), y.batch_axis)
    return y


def _resize_axis(ctx: ImportContext, x: Runtime, axis: int, matrix: np.ndarray) -> Runtime:
    """x with `axis` (2 or 3) mapped by matrix (out, in): the axis moved to the channels
    and mixed by a 1x1 convolution whose weight is the matrix, then moved back. The batch
    stays the leading axis, so the model compiles for any batch size (batch_size=None)."""
    perm = (0, 2, 1, 3) if axis == 2 else (0, 3, 2, 1)   # its own inverse
    moved = ctx.apply("transpose", [x.tensor], perm=perm)
    weight = constant(matrix.astype(np.float32).reshape(matrix.shape + (1, 1)))
    mixed = ctx.apply("conv2d", [moved, weight])
    return Runtime(ctx.apply("transpose", [mixed], perm=perm), x.batch_axis)


def _nearest(ctx: ImportContext, node: OnnxNode, x: Runtime, in_shape: tuple[int, ...],
             scale: dict[int, float], sizes: dict[int, int] | None) -> Runtime:
    """Nearest resizing of H and W where the pixels ONNX reads are those PyTorch's
    'nearest' reads: integer repetition (upsample_nearest2d), or floor(y * in / out)
    (resize2d, e.g. 'asymmetric' + 'floor' as graphcnn exports it)."""
    coord = node.attrs.get("coordinate_transformation_mode", "half_pixel")
    rounding = node.attrs.get("nearest_mode", "round_prefer_floor")
    hw = (2, 3)
    out = tuple(sizes.get(a, in_shape[a]) if sizes is not None else
                int(math.floor(in_shape[a] * scale.get(a, 1.0))) for a in hw)
    if min(out) < 1:
        raise ctx.error(f"the output size {out} of H, W {in_shape[2:]} is empty")
    try:
        index = [_nearest_index(o, in_shape[a], scale.get(a, 1.0), coord, rounding)
                 for o, a in zip(out, hw)]
    except ValueError:
        raise ctx.error(f"coordinate_transformation_mode {coord!r} / nearest_mode "
                        f"{rounding!r} is not supported") from None
    factors = [o // in_shape[a] if o % in_shape[a] == 0 else 0 for o, a in zip(out, hw)]
    if all(f and np.array_equal(i, np.arange(o) // f) for f, i, o in zip(factors, index, out)):
        if factors == [1, 1]:
            return x
        return Runtime(ctx.apply("upsample_nearest2d", [x.tensor], scale=tuple(factors)),
                       x.batch_axis)
    coord_scales = None if sizes is not None else tuple(scale.get(a, 1.0) for a in hw)
    pair = coord_scales or (None, None)
    torch_index = [axis_table(in_shape[a], o, "nearest", False, s).i0
                   for a, o, s in zip(hw, out, pair)]
    if not all(np.array_equal(i, t) for i, t in zip(index, torch_index)):
        raise ctx.error(f"nearest Resize ({coord!r}, nearest_mode {rounding!r}) from H, W "
                        f"{in_shape[2:]} to {out} does not repeat pixels a whole number of "
                        f"times, nor read pixel floor(y * in / out) as PyTorch's 'nearest' "
                        f"(e.g. 'asymmetric' + 'floor'): not supported")
    y = ctx.apply("resize2d", [x.tensor], size=out, mode="nearest", scales=coord_scales)
    return Runtime(y, x.batch_axis)


def _linear(ctx: ImportContext, node: OnnxNode, x: Runtime, in_shape: tuple[int, ...],
            scale: dict[int, float], sizes: dict[int, int] | None) -> Runtime:
    """Bilinear resizing of H and W: the output size is `sizes`, or floor(in * scale) as
    ONNX defines it; with scales, half_pixel maps coordinates with 1 / scale (the
    `scales` attribute of resize2d), with sizes with in / out."""
    coord = node.attrs.get("coordinate_transformation_mode", "half_pixel")
    if coord not in LINEAR_MODES:
        raise ctx.error(f"linear Resize with coordinate_transformation_mode {coord!r} is not "
                        f"supported (supported: {', '.join(LINEAR_MODES)})")
    if int(node.attrs.get("antialias", 0)) and min(scale.get(2, 1.0), scale.get(3, 1.0)) < 1:
        raise ctx.error("antialiased linear downsampling (antialias=1) is not supported")
    hw = (2, 3)
    if sizes is not None:
        out = tuple(sizes.get(a, in_shape[a]) for a in hw)
        coord_scales = None
    else:
        out = tuple(int(math.floor(in_shape[a] * scale.get(a, 1.0))) for a in hw)
        coord_scales = tuple(scale.get(a, 1.0) for a in hw)
    if min(out) < 1:
        raise ctx.error(f"the output size {out} of H, W {in_shape[2:]} is empty")
    if coord == "pytorch_half_pixel" and any(o == 1 and i != 1 for o, i in
                                             zip(out, in_shape[2:])):
        raise ctx.error("pytorch_half_pixel to an output size of 1 (it reads pixel 0) is "
                        "not supported; half_pixel is")
    corners = LINEAR_MODES[coord]
    if coord_scales is not None and not corners and any(
            o == in_shape[a] and s != 1.0 for o, a, s in zip(out, hw, coord_scales)):
        # PyTorch copies an axis whose size stays (4 * 1.09 -> 4); ONNX still maps it
        raise ctx.error(f"linear Resize by scales {coord_scales} keeps the size {out} of an "
                        f"axis of H, W {in_shape[2:]} but moves its pixels")
    y = ctx.apply("resize2d", [x.tensor], size=out, mode="bilinear", align_corners=corners,
                  scales=None if corners else coord_scales)
    return Runtime(y, x.batch_axis)
