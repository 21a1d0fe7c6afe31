"""Importers of the normalizations and rearrangements of graphcnn/nn/rearrange.py: LRN,
InstanceNormalization, GroupNormalization, DepthToSpace, SpaceToDepth, and Tile (as a
concatenation of copies). Each builds the same ops as the matching nn layer."""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.dsl import Tensor, constant
from graphcnn.nn.rearrange import depth_to_space, local_response_norm, space_to_depth
from graphcnn.onnx.context import PROBES, ImportContext, Runtime, fold
from graphcnn.onnx.importers import FoldedValues, Values, folder, importer
from graphcnn.onnx.reader import OnnxNode


def _channels_input(ctx: ImportContext, value: Any, op: str, min_ndim: int) -> Runtime:
    x = ctx.runtime(value, "X")
    if x.ndim < min_ndim:
        raise ctx.error(f"{op} needs an (N, C, ...) input with at least {min_ndim} axes, got "
                        f"shape {x.shape_at(PROBES[0])}")
    ctx.check_batch_first(x, op)
    return x


@importer("LRN", limits="input (N, C, ...) with the batch first")
def lrn(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    x = _channels_input(ctx, ins[0], "LRN", 3)
    a = node.attrs
    if "size" not in a:
        raise ctx.error("the size attribute is required")
    size = int(a["size"])
    if size < 1:
        raise ctx.error(f"size must be >= 1, got {size}")
    # ONNX's window is [c - floor((size-1)/2), c + ceil((size-1)/2)]: torch's is shifted
    # by one channel for an even size, so the window start is passed explicitly
    y = local_response_norm(x.tensor, size, float(a.get("alpha", 1e-4)),
                            float(a.get("beta", 0.75)), float(a.get("bias", 1.0)),
                            before=(size - 1) // 2, op=ctx.apply)
    return [Runtime(y, x.batch_axis)]


def _per_channel(ctx: ImportContext, value: Any, what: str, channels: int,
                 groups: int) -> Tensor:
    """A (C,) scale or bias; a (G,) one (GroupNormalization before opset 21: one value
    per group) is repeated over each group's channels."""
    if value is None:
        raise ctx.error(f"{what} is missing")
    if isinstance(value, Runtime):
        t = value.tensor
        if value.batch_axis is not None or t.type.shape != (channels,):
            raise ctx.error(f"{what} must be a ({channels},) tensor that does not depend on "
                            f"the batch, got shape {value.shape_at(PROBES[0])}")
        return t
    array = np.asarray(ctx.static(value, what))
    if array.shape == (channels,):
        return ctx.tensor(value, what)
    if array.shape == (groups,):
        return constant(np.repeat(array.astype(np.float32), channels // groups))
    want = f"({channels},)" + (f" or ({groups},)" if groups != channels else "")
    raise ctx.error(f"{what} must have shape {want}, got {array.shape}")


def _group_norm(ctx: ImportContext, node: OnnxNode, ins: Values, op: str,
                groups: int | None) -> list[Any]:
    x = _channels_input(ctx, ins[0], op, 3 if groups is None else 2)
    channels = x.tensor.type.shape[1]
    groups = channels if groups is None else groups
    if groups < 1 or channels % groups:
        raise ctx.error(f"num_groups {groups} does not divide the {channels} channels")
    # opset 18 gives a value per group (a defect opset 21 fixed: per channel); the
    # shapes tell the two apart, except when they coincide (groups == channels)
    scale = _per_channel(ctx, ins[1] if len(ins) > 1 else None, "scale", channels,
                         groups if node.opset < 21 else channels)
    bias = _per_channel(ctx, ins[2] if len(ins) > 2 else None, "B", channels,
                        groups if node.opset < 21 else channels)
    eps = float(node.attrs.get("epsilon", 1e-5))
    y = ctx.apply("group_norm", [x.tensor, scale, bias], num_groups=groups, eps=eps)
    return [Runtime(y, x.batch_axis)]


@importer("InstanceNormalization", limits="input (N, C, ...) with the batch first")
def instance_normalization(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    return _group_norm(ctx, node, ins, "InstanceNormalization", None)


@importer("GroupNormalization",
          limits="opset 18's per-group scale and B must be constants")
def group_normalization(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    if "num_groups" not in node.attrs:
        raise ctx.error("the num_groups attribute is required")
    return _group_norm(ctx, node, ins, "GroupNormalization", int(node.attrs["num_groups"]))


def _block_args(ctx: ImportContext, node: OnnxNode, ins: Values, op: str
                ) -> tuple[Runtime, int, str]:
    x = ctx.runtime(ins[0], "input")
    if x.ndim != 4:
        raise ctx.error(f"{op} needs an (N, C, H, W) input, got shape "
                        f"{x.shape_at(PROBES[0])}")
    ctx.check_batch_first(x, op)
    if "blocksize" not in node.attrs:
        raise ctx.error("the blocksize attribute is required")
    r = int(node.attrs["blocksize"])
    mode = node.attrs.get("mode", "DCR")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if r < 1:
        raise ctx.error(f"blocksize must be >= 1, got {r}")
    if mode not in ("DCR", "CRD"):
        raise ctx.error(f"mode {mode!r} is not DCR or CRD")
    return x, r, mode


@importer("DepthToSpace", limits="4-D input with the batch first")
def depth_to_space_node(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    x, r, mode = _block_args(ctx, node, ins, "DepthToSpace")
    channels = x.tensor.type.shape[1]
    if channels % (r * r):
        raise ctx.error(f"the {channels} channels are not divisible by blocksize^2 = {r * r}")
    return [Runtime(depth_to_space(x.tensor, r, mode, op=ctx.apply), x.batch_axis)]


@importer("SpaceToDepth", limits="4-D input with the batch first")
def space_to_depth_node(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    x, r, mode = _block_args(ctx, node, ins, "SpaceToDepth")
    h, w = x.tensor.type.shape[2:]
    if h % r or w % r:
        raise ctx.error(f"height {h} and width {w} must be divisible by blocksize {r}")
    return [Runtime(space_to_depth(x.tensor, r, mode, op=ctx.apply), x.batch_axis)]


@importer("Tile", limits="constant repeats, each >= 1")
def tile(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    x = ctx.runtime(ins[0], "input")
    repeats = ctx.ints(ins[1] if len(ins) > 1 else None, "repeats")
    if len(repeats) != x.ndim:
        raise ctx.error(f"repeats {repeats} must have one value per axis of the {x.ndim}-D "
                        f"input")
    if min(repeats, default=1) < 1:
        raise ctx.error(f"repeats {repeats} must be >= 1 (an empty result is not supported)")
    # Tile along an axis is the input concatenated with itself: exact, and its gradient
    # (the sum of the copies' gradients) comes from concat's. Along the batch axis too:
    # the copies of the whole batch one after the other are np.tile's order.
    y = x.tensor
    for axis, count in enumerate(repeats):
        if count > 1:
            y = ctx.apply("concat", [y] * count, axis=axis)
    return [Runtime(y, x.batch_axis)]


@folder("Tile")
def fold_tile(ctx: ImportContext, node: OnnxNode, ins: FoldedValues) -> list[Any]:
    x = ctx.required(ins[0])
    repeats = ctx.ints(ins[1] if len(ins) > 1 else None, "repeats")
    if len(repeats) != x.ndim or min(repeats, default=1) < 0:
        raise ctx.error(f"repeats {repeats} must be one value >= 0 per axis of the "
                        f"{x.ndim}-D input")
    ctx.check_folded([[d * r for d, r in zip(v.shape, repeats)] for v in x.values],
                     x.values[0].dtype)
    return [fold(lambda a: np.tile(a, repeats), x)]
