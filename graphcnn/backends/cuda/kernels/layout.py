"""The blocked layout's ops on the device (graphcnn/ops/layout.py). The layout pass makes
them for the cpu backend only (the GPU's kernels are written for NCHW), so these are
plain and correct rather than fast: a graph that holds them still runs here. The two
conversions are strided copies (C split into blocks of 16 and lanes); conv2d_blocked and
max_pool2d_blocked convert their input to NCHW, run the NCHW op and convert back."""
from __future__ import annotations

from typing import Any

from graphcnn.backends.cuda.codegen import identity_epilogue
from graphcnn.backends.cuda.kernels.conv import plan_conv2d
from graphcnn.backends.cuda.kernels.shape import _fill, plan_copy
from graphcnn.backends.cuda.registry import (
    Launch,
    cuda_kernel,
    flat,
    get_kernel,
    launch_1d,
    scratch,
)
from graphcnn.ops.layout import BLOCK, POINTWISE, conv_attrs, in_channels


def _block_copies(nchw: Any, blocked: Any, to_blocked: bool) -> list[Launch]:
    """Copies between NCHW (N, C, H, W) and NCHW16c: the whole blocks, then the channels
    of a last partial one."""
    n, c, h, w = nchw.shape
    hw, cb = h * w, blocked.shape[1]
    launches = []
    for first, count in ((0, c // BLOCK * BLOCK), (c // BLOCK * BLOCK, c % BLOCK)):
        if count == 0:
            continue
        dims = (n, count // BLOCK if count >= BLOCK else 1, min(count, BLOCK), hw)
        nchw_strides = (c * hw, BLOCK * hw, hw, 1)
        blocked_strides = (cb * hw * BLOCK, hw * BLOCK, 1, BLOCK)
        nchw_base, blocked_base = first * hw, first // BLOCK * hw * BLOCK
        if to_blocked:
            launches += plan_copy(nchw, blocked, dims, nchw_strides, blocked_strides,
                                  nchw_base, blocked_base, what="to_blocked")
        else:
            launches += plan_copy(blocked, nchw, dims, blocked_strides, nchw_strides,
                                  blocked_base, nchw_base, what="from_blocked")
    return launches


@cuda_kernel("to_blocked")
def to_blocked_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    out = outs[0]
    zero = [launch_1d(_fill, out.size, flat(out), out.dtype.type(0))] \
        if ins[0].shape[1] % BLOCK else []
    return zero + _block_copies(ins[0], out, to_blocked=True)


@cuda_kernel("from_blocked")
def from_blocked_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]
                      ) -> list[Launch]:
    return _block_copies(outs[0], ins[0], to_blocked=False)


@cuda_kernel("conv2d_blocked")
def conv2d_blocked_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]
                        ) -> list[Launch]:
    x, w, out = ins[0], ins[1], outs[0]
    n, h, wd = x.shape[0], x.shape[2], x.shape[3]
    c = in_channels(w.shape, attrs["groups"])
    _, _, oh, ow, _ = out.shape
    y_nchw = scratch(n * w.shape[0] * oh * ow, out.dtype).reshape(n, w.shape[0], oh, ow)
    if x.ndim == 4:  # an NCHW input (a region's first conv)
        return (plan_conv2d(list(ins), y_nchw, attrs, identity_epilogue(out.dtype))
                + to_blocked_plan([y_nchw], [out], {}))
    x_nchw = scratch(n * c * h * wd, x.dtype).reshape(n, c, h, wd)
    return (_block_copies(x_nchw, x, to_blocked=False)
            + plan_conv2d([x_nchw] + list(ins[1:]), y_nchw, attrs,
                          identity_epilogue(out.dtype))
            + to_blocked_plan([y_nchw], [out], {}))


@cuda_kernel("expand_depthwise_blocked")
def expand_depthwise_blocked_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]
                                  ) -> list[Launch]:
    """The 1x1 conv, the clip and the depthwise conv one after the other, through NCHW."""
    x, w1, b1, w2, b2 = ins
    n, h, wd = x.shape[0], x.shape[2], x.shape[3]
    e = w1.shape[0]
    expanded = scratch(n * -(-e // BLOCK) * h * wd * BLOCK, x.dtype).reshape(
        n, -(-e // BLOCK), h, wd, BLOCK)
    clipped = scratch(expanded.size, x.dtype).reshape(expanded.shape)
    return (conv2d_blocked_plan([x, w1, b1], [expanded], dict(POINTWISE))
            + get_kernel("clip")([expanded], [clipped], {"low": attrs["low"],
                                                         "high": attrs["high"]})
            + conv2d_blocked_plan([clipped, w2, b2], outs, conv_attrs(attrs)))


@cuda_kernel("max_pool2d_blocked")
def max_pool2d_blocked_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]
                            ) -> list[Launch]:
    """Through NCHW: every lane as a channel, the NCHW pool, and back."""
    x, out = ins[0], outs[0]
    n, cb, h, wd, _ = x.shape
    oh, ow = out.shape[2], out.shape[3]
    x_nchw = scratch(x.size, x.dtype).reshape(n, cb * BLOCK, h, wd)
    y_nchw = scratch(out.size, out.dtype).reshape(n, cb * BLOCK, oh, ow)
    return (_block_copies(x_nchw, x, to_blocked=False)
            + get_kernel("max_pool2d")([x_nchw], [y_nchw], attrs)
            + _block_copies(y_nchw, out, to_blocked=True))
