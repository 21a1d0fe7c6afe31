"""The Resize importer. Every mode is imported: the H and W axes of an N, C, H, W tensor,
with scales or sizes (keep_aspect_ratio_policy, `axes`), as ONNX's operator defines it.

Each resized axis has an interpolation matrix (ops_resize_general.py). Where those
matrices are the ones a fast op computes, that op runs: `upsample_nearest2d` for nearest
repetition by whole numbers, `resize2d` where ONNX reads the pixels (and weights)
PyTorch's 'nearest' or 'bilinear' reads; otherwise the matrices run as matrix products
(cubic, antialias, tf_crop_and_resize, half_pixel_symmetric, any nearest rounding)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphcnn.onnx.context import PROBES, Folded, ImportContext, Runtime
from graphcnn.onnx.importers import Values, importer
from graphcnn.onnx.ops_resize_general import (
    AxisPlan,
    Options,
    apply_matrices,
    axis_matrix,
    check_options,
    extrapolation_mask,
)
from graphcnn.onnx.reader import OnnxNode
from graphcnn.ops.resize import axis_table, interpolation_matrix


def _text(node: OnnxNode, name: str, default: str) -> str:
    value = node.attrs.get(name, default)
    return value.decode() if isinstance(value, bytes) else str(value)


def _options(node: OnnxNode) -> Options:
    return Options(
        mode=_text(node, "mode", "nearest"),
        coord=_text(node, "coordinate_transformation_mode", "half_pixel"),
        nearest_mode=_text(node, "nearest_mode", "round_prefer_floor"),
        cubic_a=float(node.attrs.get("cubic_coeff_a", -0.75)),
        exclude_outside=bool(int(node.attrs.get("exclude_outside", 0))),
        antialias=bool(int(node.attrs.get("antialias", 0))),
        extrapolation=float(node.attrs.get("extrapolation_value", 0.0)))


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


def _roi(ctx: ImportContext, ins: Values, axes: list[int], coord: str
         ) -> dict[int, tuple[float, float]]:
    """(start, end) per axis: the roi input, read by tf_crop_and_resize only."""
    if coord != "tf_crop_and_resize":
        return {}
    if len(ins) < 2 or ins[1] is None:
        raise ctx.error("tf_crop_and_resize needs the roi input")
    roi = [float(v) for v in np.asarray(ctx.static(ins[1], "roi")).reshape(-1)]
    if len(roi) != 2 * len(axes):
        raise ctx.error(f"roi {roi} must have a start and an end per axis {axes}")
    return {a: (roi[k], roi[k + len(axes)]) for k, a in enumerate(axes)}


def _targets(ctx: ImportContext, node: OnnxNode, ins: Values, x: Runtime
             ) -> tuple[dict[int, AxisPlan], list[int]]:
    """The plan of every axis (unresized ones: the identity), and the resized axes."""
    in_shape = x.tensor.type.shape
    axes = [_axis(ctx, int(a), 4) for a in node.attrs.get("axes", range(4))]
    if len(set(axes)) != len(axes):
        raise ctx.error(f"axes {axes} repeat an axis")
    scales = ins[2] if len(ins) > 2 else None
    sizes = ins[3] if len(ins) > 3 else None
    plans = {a: AxisPlan(in_shape[a], in_shape[a], 1.0, float(in_shape[a])) for a in range(4)}
    if scales is not None and ctx.static(scales, "scales").size:
        given = [float(v) for v in ctx.static(scales, "scales").reshape(-1)]
        if len(given) != len(axes):
            raise ctx.error(f"scales {given} must have one value per axis {axes}")
        if not all(math.isfinite(s) and s > 0 for s in given):
            raise ctx.error(f"scales {given} must be positive")
        for a, s in zip(axes, given):
            # the batch is never resized: its scale must be 1 (checked by the caller)
            n = in_shape[a]
            plans[a] = AxisPlan(n, n if a == 0 else int(math.floor(n * s)), s, s * n)
        return plans, axes
    if sizes is None:
        raise ctx.error("neither scales nor sizes is given")
    wanted = _sizes(ctx, x, sizes, axes)
    if len(wanted) != len(axes):
        raise ctx.error(f"sizes {wanted} must have one value per axis {axes}")
    if min(wanted) < 1:
        raise ctx.error(f"sizes {wanted} must be positive")
    # the batch is never resized (its size is the file's batch)
    out = {a: (in_shape[a] if a == 0 else s) for a, s in zip(axes, wanted)}
    policy = _text(node, "keep_aspect_ratio_policy", "stretch")
    if policy == "stretch":
        for a, o in out.items():
            plans[a] = AxisPlan(in_shape[a], o, o / in_shape[a], float(o))
        return plans, axes
    if policy not in ("not_larger", "not_smaller"):
        raise ctx.error(f"keep_aspect_ratio_policy {policy!r} is not one of stretch, "
                        f"not_larger, not_smaller")
    ratios = [o / in_shape[a] for a, o in out.items()]
    s = min(ratios) if policy == "not_larger" else max(ratios)
    for a in out:
        n = in_shape[a]
        plans[a] = AxisPlan(n, n if a == 0 else int(s * n + 0.5), s, s * n)
    return plans, axes


@importer("Resize")
def resize(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    x = ctx.runtime(ins[0])
    opts = _options(node)
    why = check_options(opts)
    if why is not None:
        raise ctx.error(why)
    if x.ndim != 4:
        raise ctx.error(f"graphcnn resizes 4-D N, C, H, W tensors only, got "
                        f"{x.shape_at(PROBES[0])}")
    ctx.check_batch_first(x, "Resize")
    in_shape = x.tensor.type.shape
    plans, axes = _targets(ctx, node, ins, x)
    roi = _roi(ctx, ins, axes, opts.coord)
    if any(plans[a].scale != 1.0 or plans[a].out_size != in_shape[a] or
           roi.get(a, (0.0, 1.0)) != (0.0, 1.0) for a in (0, 1)):
        crop = f" and roi {[roi.get(a, (0.0, 1.0)) for a in range(4)]}" if roi else ""
        raise ctx.error(f"graphcnn resizes H and W only; the scales "
                        f"{[plans[a].scale for a in range(4)]}{crop} change N or C")
    hw = [AxisPlan(p.in_size, p.out_size, p.scale, p.length, roi.get(a, (0.0, 1.0)))
          for a, p in ((2, plans[2]), (3, plans[3]))]
    out = tuple(p.out_size for p in hw)
    if min(out) < 1:
        raise ctx.error(f"the output size {out} of H, W {in_shape[2:]} is empty")
    for p in hw:   # built in float64 at import (a float32 copy becomes the weight)
        ctx.check_size((p.out_size, p.in_size), np.float64, "the interpolation matrix")
    (a_h, out_h), (a_w, out_w) = (axis_matrix(p, opts) for p in hw)
    if not (out_h.any() or out_w.any()):
        fast = _fast(ctx, x, opts.mode, hw, a_h, a_w)
        if fast is not None:
            return [fast]
    extra = extrapolation_mask(out_h, out_w, opts.extrapolation)
    return [apply_matrices(ctx, x, a_h, a_w, extra)]


def _fast(ctx: ImportContext, x: Runtime, mode: str, hw: list[AxisPlan], a_h: np.ndarray,
          a_w: np.ndarray) -> Runtime | None:
    """The resize by `upsample_nearest2d` or `resize2d` where their pixels and weights are
    the matrices' (None where neither computes them)."""
    mats = (a_h, a_w)
    out = (hw[0].out_size, hw[1].out_size)
    if mode == "nearest":
        factors = [p.out_size // p.in_size if p.out_size % p.in_size == 0 else 0 for p in hw]
        if all(f and np.array_equal(a, np.eye(p.in_size).repeat(f, axis=0))
               for f, a, p in zip(factors, mats, hw)):
            if factors == [1, 1]:
                return x
            return Runtime(ctx.apply("upsample_nearest2d", [x.tensor], scale=tuple(factors)),
                           x.batch_axis)
    if mode not in ("nearest", "linear"):
        return None
    torch_mode = "nearest" if mode == "nearest" else "bilinear"
    scales = (hw[0].scale, hw[1].scale)
    for corners, coord_scales in ((False, scales), (False, None), (True, None)):
        if corners and mode == "nearest":
            continue
        pair = coord_scales or (None, None)
        torch_mats = [interpolation_matrix(axis_table(p.in_size, p.out_size, torch_mode,
                                                      corners, s, np.float64), p.in_size)
                      for p, s in zip(hw, pair)]
        if all(np.allclose(t, a, rtol=0, atol=1e-6) for t, a in zip(torch_mats, mats)):
            y = ctx.apply("resize2d", [x.tensor], size=out, mode=torch_mode,
                          align_corners=corners, scales=coord_scales)
            return Runtime(y, x.batch_axis)
    return None
