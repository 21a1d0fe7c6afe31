"""The blocked channel layout, NCHW16c, and the convolution that runs in it.

A blocked tensor holds an NCHW tensor's channels in blocks of 16, the block innermost:

    blocked[n, c // 16, h, w, c % 16] = x[n, c, h, w]        shape (N, ceil(C/16), H, W, 16)

so the 16 channels of one pixel are one AVX-512 vector, contiguous. A depthwise
convolution then multiplies whole vectors (one filter per lane) with no per-plane setup,
and a 1x1 convolution keeps 16 output channels in each register. The layout pass
(graphcnn/passes/layout.py) converts once where a region of the graph begins and ends, not
per op. The lanes past C in the last block are padding: `to_blocked` fills them with
zeros, the ops in the layout keep them as their formula makes them (an epilogue's
sigmoid makes 0.5 there), and nothing ever reads them into a real channel.

    to_blocked(x)                           NCHW -> NCHW16c
    from_blocked(x, channels=C)             NCHW16c -> NCHW, the padding dropped
    conv2d_blocked(x, weight, bias?)        conv2d with y blocked, x blocked or (the first
                                            conv of a region) NCHW; weight and bias as
                                            conv2d's (O, C/groups, kH, kW) and (O,)

    max_pool2d_blocked(x, kernel_size, ...) max_pool2d of a blocked x (each lane a channel;
                                            max_pool2d's attributes and rules), blocked out:
                                            an image stem's pool, so the conversion back to
                                            NCHW moves the pooled tensor, not the conv's

    expand_depthwise_blocked(x, w1, b1, w2, b2)
                                            MobileNetV2's expansion, as one op: a 1x1 conv
                                            (w1, b1), clip(low, high), then a depthwise 3x3
                                            conv (w2, b2, the conv attributes), blocked in
                                            and out; the kernel never writes the expanded
                                            tensor, the block's largest

These ops are made by the layout pass after differentiation, so the convolutions and the
pool have no VJP of their own; the two conversions are each other's.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.errors import ShapeError
from graphcnn.ir.types import TensorType
from graphcnn.ops.conv import CONV_ATTRS, conv2d_ref, conv2d_shape
from graphcnn.ops.pool import MAX_ATTRS, max_pool2d_ref, pool_canonicalize, pool_shape
from graphcnn.ops.registry import Attr, FusionKind, expect_float, expect_ndim, register_op

BLOCK = 16  # channels per block: one 512-bit vector of float32


def blocks(channels: int) -> int:
    return -(-channels // BLOCK)


def blocked_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The NCHW16c shape of an NCHW shape."""
    n, c, h, w = shape
    return (n, blocks(c), h, w, BLOCK)


def logical_type(t: TensorType, channels: int, what: str) -> TensorType:
    """The NCHW type that blocked `t` holds, with `channels` channels (checked)."""
    expect_ndim(t, 5, what, "N, C/16, H, W, 16")
    if t.shape[4] != BLOCK or t.shape[1] != blocks(channels):
        raise ShapeError(f"{what} has shape {t.shape}, but {channels} channels in blocks of "
                         f"{BLOCK} need (N, {blocks(channels)}, H, W, {BLOCK})")
    return TensorType((t.shape[0], channels) + t.shape[2:4], t.dtype)


# ---- the two conversions ---------------------------------------------------------------

def to_blocked_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    x = in_types[0]
    expect_ndim(x, 4, "to_blocked input", "N, C, H, W")
    return TensorType(blocked_shape(x.shape), x.dtype)


def to_blocked_ref(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    padded = np.zeros((n, blocks(c) * BLOCK, h, w), x.dtype)
    padded[:, :c] = x
    return np.ascontiguousarray(
        padded.reshape(n, blocks(c), BLOCK, h, w).transpose(0, 1, 3, 4, 2))


def to_blocked_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    return [graph.add("from_blocked", [cot[0]], channels=node.inputs[0].shape[1])]


def from_blocked_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    return logical_type(in_types[0], attrs["channels"], "from_blocked input")


def from_blocked_ref(x: np.ndarray, channels: int) -> np.ndarray:
    n, cb, h, w, _ = x.shape
    whole = x.transpose(0, 1, 4, 2, 3).reshape(n, cb * BLOCK, h, w)
    return np.ascontiguousarray(whole[:, :channels])


def from_blocked_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    return [graph.add("to_blocked", [cot[0]])]


def _channels(value: Any) -> int:
    value = int(value)
    if value < 1:
        raise ShapeError(f"channels must be >= 1, got {value}")
    return value


# ---- the convolution ---------------------------------------------------------------------

def in_channels(w_shape: tuple[int, ...], groups: int) -> int:
    return w_shape[1] * groups


def conv2d_blocked_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    x, w = in_types[0], in_types[1]
    expect_float(x, "input")
    expect_ndim(w, 4, "conv2d_blocked weight", "out_channels, in_channels/groups, kH, kW")
    logical = x if x.ndim == 4 else logical_type(x, in_channels(w.shape, attrs["groups"]),
                                                 "conv2d_blocked input")
    out = conv2d_shape([logical] + list(in_types[1:]), attrs)
    return TensorType(blocked_shape(out.shape), out.dtype)


def conv2d_blocked_ref(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
                       **attrs: Any) -> np.ndarray:
    logical = x if x.ndim == 4 else from_blocked_ref(x, in_channels(w.shape, attrs["groups"]))
    return to_blocked_ref(conv2d_ref(logical, w, b, **attrs))


def formed_after_differentiation(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    raise NotImplementedError(f"{node.op!r} is made by the layout pass, after "
                              "differentiation; differentiate the NCHW graph instead")


# ---- max pooling -------------------------------------------------------------------------

def _all_lanes(t: TensorType) -> TensorType:
    """The NCHW type of every lane of a blocked type (its padding lanes as channels)."""
    expect_ndim(t, 5, "max_pool2d_blocked input", "N, C/16, H, W, 16")
    return TensorType((t.shape[0], t.shape[1] * BLOCK) + t.shape[2:4], t.dtype)


def max_pool2d_blocked_shape(in_types: list[TensorType], attrs: dict[str, Any]
                             ) -> TensorType:
    return TensorType(blocked_shape(pool_shape([_all_lanes(in_types[0])], attrs).shape),
                      in_types[0].dtype)


def max_pool2d_blocked_ref(x: np.ndarray, **attrs: Any) -> np.ndarray:
    return to_blocked_ref(max_pool2d_ref(from_blocked_ref(x, x.shape[1] * BLOCK), **attrs))


# ---- a 1x1 expansion and a depthwise conv, fused ------------------------------------------

# The attributes of the 1x1 conv inside expand_depthwise_blocked.
POINTWISE = {"stride": (1, 1), "padding": (0, 0, 0, 0), "dilation": (1, 1), "groups": 1}


def conv_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """The depthwise conv's attributes among expand_depthwise_blocked's."""
    return {k: attrs[k] for k in CONV_ATTRS}


def expand_depthwise_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    x, w1, b1, w2, b2 = in_types
    expanded = conv2d_blocked_shape([x, w1, b1], POINTWISE)
    if w2.ndim != 4 or w2.shape[0] != w1.shape[0] or attrs["groups"] != w1.shape[0]:
        raise ShapeError(f"the depthwise weight {w2.shape} (groups={attrs['groups']}) must "
                         f"have one filter per expanded channel ({w1.shape[0]})")
    return conv2d_blocked_shape([expanded, w2, b2], conv_attrs(attrs))


def expand_depthwise_ref(x: np.ndarray, w1: np.ndarray, b1: np.ndarray, w2: np.ndarray,
                         b2: np.ndarray, **attrs: Any) -> np.ndarray:
    expanded = conv2d_blocked_ref(x, w1, b1, **POINTWISE)
    clipped = np.clip(expanded, attrs["low"], attrs["high"]).astype(expanded.dtype)
    return conv2d_blocked_ref(clipped, w2, b2, **conv_attrs(attrs))


register_op("to_blocked", inputs=("x",), shape=to_blocked_shape, ref=to_blocked_ref,
            vjp=to_blocked_vjp, kind=FusionKind.OPAQUE,
            doc="NCHW -> NCHW16c (channels in blocks of 16, the block innermost; zeros "
                "past the last channel).")
register_op("from_blocked", inputs=("x",), shape=from_blocked_shape, ref=from_blocked_ref,
            vjp=from_blocked_vjp, kind=FusionKind.OPAQUE,
            attrs={"channels": Attr(convert=_channels)},
            doc="NCHW16c -> NCHW with `channels` channels (the padding dropped).")
register_op("conv2d_blocked", inputs=("x", "weight", "bias?"), shape=conv2d_blocked_shape,
            ref=conv2d_blocked_ref, vjp=formed_after_differentiation,
            kind=FusionKind.OUT_ELEMWISE_FUSABLE, attrs=CONV_ATTRS,
            doc="conv2d with its output in NCHW16c, its input in NCHW16c or NCHW (weight and "
                "bias as conv2d's).")
register_op("max_pool2d_blocked", inputs=("x",), shape=max_pool2d_blocked_shape,
            ref=max_pool2d_blocked_ref, vjp=formed_after_differentiation,
            kind=FusionKind.OPAQUE, attrs=MAX_ATTRS, canonicalize=pool_canonicalize,
            doc="max_pool2d of an NCHW16c input, each lane a channel, NCHW16c out.")
register_op("expand_depthwise_blocked", inputs=("x", "w1", "b1", "w2", "b2"),
            shape=expand_depthwise_shape, ref=expand_depthwise_ref,
            vjp=formed_after_differentiation, kind=FusionKind.OUT_ELEMWISE_FUSABLE,
            attrs=dict(CONV_ATTRS, low=Attr(convert=float), high=Attr(convert=float)),
            doc="conv2d_blocked(x, w1, b1) (1x1), clip(low, high), then a depthwise 3x3 "
                "conv2d_blocked with w2, b2 and the conv attributes: MobileNetV2's expansion "
                "without its expanded tensor.")
