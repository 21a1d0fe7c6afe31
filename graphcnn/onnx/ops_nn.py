"""Importers of the layer ops: Conv, ConvTranspose, MaxPool, AveragePool, the global pools
(and ReduceMean over H, W), BatchNormalization, Gemm and MatMul."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphcnn.dsl import constant
from graphcnn.onnx.context import PROBES, ImportContext, Runtime
from graphcnn.onnx.importers import Values, importer
from graphcnn.onnx.ops_window1d import import_1d
from graphcnn.onnx.reader import OnnxNode


def _spatial_input(ctx: ImportContext, value: Any, op: str) -> Runtime:
    x = ctx.runtime(value, "X")
    if x.ndim != 4:
        raise ctx.error(f"graphcnn imports 2-D {op} only (a 4-D N, C, H, W input); got "
                        f"shape {x.shape_at(PROBES[0])}")
    ctx.check_batch_first(x, op)
    return x


def _pair_attr(ctx: ImportContext, node: OnnxNode, name: str, default: int
               ) -> tuple[int, int]:
    value = [int(v) for v in node.attrs.get(name, [default, default])]
    if len(value) != 2:
        raise ctx.error(f"attribute {name} must have 2 values (H, W), got {value}")
    return value[0], value[1]


def window_pads(ctx: ImportContext, node: OnnxNode, in_hw: tuple[int, ...],
                kernel: tuple[int, ...], strides: tuple[int, int],
                dilations: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) from the pads or auto_pad attribute (Conv and pools)."""
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", ""):
        pads = [int(p) for p in node.attrs.get("pads", [0, 0, 0, 0])]
        if len(pads) != 4:
            raise ctx.error(f"pads must have 4 values (begin H, begin W, end H, end W), got "
                            f"{pads}")
        if min(pads) < 0:
            raise ctx.error(f"negative pads {pads} are not supported")
        return pads[0], pads[2], pads[1], pads[3]
    if auto_pad == "VALID":
        return 0, 0, 0, 0
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.error(f"unknown auto_pad {auto_pad!r}")
    out: list[int] = []
    for size, k, s, d in zip(in_hw, kernel, strides, dilations):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        out += [small, big] if auto_pad == "SAME_UPPER" else [big, small]
    return out[0], out[1], out[2], out[3]


# ---- convolution --------------------------------------------------------------------------

def _check_kernel_shape(ctx: ImportContext, node: OnnxNode, weight: tuple[int, ...]) -> None:
    """kernel_shape is optional and says again what the weight's shape says; a file where
    the two disagree is corrupt or wrongly written (ONNX Runtime refuses it too)."""
    if "kernel_shape" not in node.attrs:
        return
    given = node.attrs["kernel_shape"]
    if not isinstance(given, list) or [int(k) for k in given] != list(weight[2:]):
        raise ctx.error(f"attribute kernel_shape {given} contradicts the weight's shape "
                        f"{list(weight)} (its kernel is {list(weight[2:])})")


def _rank3(ins: Values) -> bool:
    """A 1-D window op's input (N, C, L): imported through its 2-D importer."""
    x = ins[0] if ins else None
    return isinstance(x, Runtime) and x.ndim == 3


@importer("Conv", limits="1-D and 2-D (N, C, L / N, C, H, W)")
def conv(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    if _rank3(ins):
        return import_1d(ctx, node, ins, conv)
    x = _spatial_input(ctx, ins[0], "Conv")
    w = ctx.tensor(ins[1], "weight W")
    if w.type.ndim != 4:
        raise ctx.error(f"the weight must be 4-D (M, C/group, kH, kW), got {w.type.shape}")
    kernel = w.type.shape[2:]
    _check_kernel_shape(ctx, node, w.type.shape)
    strides = _pair_attr(ctx, node, "strides", 1)
    dilations = _pair_attr(ctx, node, "dilations", 1)
    pads = window_pads(ctx, node, x.tensor.type.shape[2:], kernel, strides, dilations)
    inputs = [x.tensor, w]
    if len(ins) > 2 and ins[2] is not None:
        inputs.append(ctx.tensor(ins[2], "bias B"))
    y = ctx.apply("conv2d", inputs, stride=strides, padding=pads, dilation=dilations,
                  groups=int(node.attrs.get("group", 1)))
    return [Runtime(y, x.batch_axis)]


@importer("ConvTranspose", limits="1-D and 2-D")
def conv_transpose(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    """y = conv2d_input_grad(x, W): the transpose of the convolution whose weight is W
    (C_in, C_out/group, kH, kW), at the output size ONNX asks for; plus the bias."""
    if _rank3(ins):
        return import_1d(ctx, node, ins, conv_transpose)
    x = _spatial_input(ctx, ins[0], "ConvTranspose")
    w = ctx.tensor(ins[1], "weight W")
    if w.type.ndim != 4:
        raise ctx.error(f"the weight must be 4-D (C, M/group, kH, kW), got {w.type.shape}")
    kernel = w.type.shape[2:]
    _check_kernel_shape(ctx, node, w.type.shape)
    in_hw = x.tensor.type.shape[2:]
    strides = _pair_attr(ctx, node, "strides", 1)
    dilations = _pair_attr(ctx, node, "dilations", 1)
    out_pad = _pair_attr(ctx, node, "output_padding", 0)
    groups = int(node.attrs.get("group", 1))
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    full = [s * (i - 1) + op + (k - 1) * d + 1
            for i, s, op, k, d in zip(in_hw, strides, out_pad, kernel, dilations)]
    if "output_shape" in node.attrs or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if "output_shape" in node.attrs:
            out_hw = [int(v) for v in node.attrs["output_shape"]][-2:]
        else:
            out_hw = [i * s for i, s in zip(in_hw, strides)]
        pads: list[int] = []
        for f, o in zip(full, out_hw):
            total = f - o
            # the ONNX rule: SAME_UPPER puts the odd pad at the end, else at the start; a
            # negative pad (output_shape beyond the full output) adds zeros there
            upper = auto_pad == "SAME_UPPER"
            pads += [total // 2, total - total // 2] if upper else [total - total // 2, total // 2]
        extend = tuple((max(-a, 0), max(-b, 0)) for a, b in (pads[:2], pads[2:]))
        top, bottom, left, right = (max(p, 0) for p in pads)
        out_hw = [f - a - b for f, a, b in zip(full, (top, left), (bottom, right))]
    else:
        if auto_pad not in ("NOTSET", "", "VALID"):
            raise ctx.error(f"unknown auto_pad {auto_pad!r}")
        p = [int(v) for v in node.attrs.get("pads", [0, 0, 0, 0])] if auto_pad != "VALID" \
            else [0, 0, 0, 0]
        if len(p) != 4 or min(p) < 0:
            raise ctx.error(f"pads must be 4 non-negative values, got {p}")
        top, left, bottom, right = p
        out_hw = [full[0] - top - bottom, full[1] - left - right]
        extend = ((0, 0), (0, 0))
    if min(out_hw) < 1:
        raise ctx.error(f"the output would be {out_hw}")
    y = ctx.apply("conv2d_input_grad", [x.tensor, w], input_hw=tuple(out_hw), stride=strides,
                  padding=(top, bottom, left, right), dilation=dilations, groups=groups)
    if extend != ((0, 0), (0, 0)):
        y = ctx.apply("pad", [y], pads=((0, 0), (0, 0)) + extend, value=0.0)
    if len(ins) > 2 and ins[2] is not None:
        bias = ctx.tensor(ins[2], "bias B")
        channels = y.type.shape[1]
        if bias.type.shape != (channels,):
            raise ctx.error(f"bias must have shape ({channels},), got {bias.type.shape}")
        y = ctx.apply("add", [y, ctx.apply("reshape", [bias], shape=(channels, 1, 1))])
    return [Runtime(y, x.batch_axis)]


# ---- pooling --------------------------------------------------------------------------------

def onnx_pool_size(size: int, pad_begin: int, pad_end: int, k: int, s: int, d: int,
                   ceil_mode: bool) -> int:
    """ONNX Runtime's output size: with ceil_mode the last window must start inside the
    input or the begin padding."""
    span = size + pad_begin + pad_end - (k - 1) * d - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + pad_begin:
        out -= 1
    return out


def _pool(ctx: ImportContext, node: OnnxNode, ins: Values, op: str) -> list[Any]:
    onnx_op = node.op_type
    if _rank3(ins):
        return import_1d(ctx, node, ins, max_pool if op == "max_pool2d" else average_pool)
    x = _spatial_input(ctx, ins[0], onnx_op)
    if "kernel_shape" not in node.attrs:
        raise ctx.error("attribute kernel_shape is missing")
    kernel = _pair_attr(ctx, node, "kernel_shape", 1)
    strides = _pair_attr(ctx, node, "strides", 1)
    dilations = _pair_attr(ctx, node, "dilations", 1)
    ceil_mode = bool(node.attrs.get("ceil_mode", 0))
    in_hw = x.tensor.type.shape[2:]
    pads = window_pads(ctx, node, in_hw, kernel, strides, dilations)
    attrs: dict[str, Any] = dict(kernel_size=kernel, stride=strides, ceil_mode=ceil_mode)
    count_include_pad = bool(node.attrs.get("count_include_pad", 0))
    if op == "max_pool2d":
        attrs["dilation"] = dilations
    else:
        attrs["count_include_pad"] = count_include_pad
    want = tuple(onnx_pool_size(size, pads[2 * a], pads[2 * a + 1], kernel[a], strides[a],
                                dilations[a], ceil_mode) for a, size in enumerate(in_hw))
    top, bottom, left, right = pads
    if op == "avg_pool2d" and dilations != (1, 1):
        return [_dilated_average(ctx, x, kernel, strides, dilations, pads, count_include_pad,
                                 want)]
    symmetric = top == bottom and left == right and top <= kernel[0] // 2 \
        and left <= kernel[1] // 2
    if symmetric:
        y = ctx.apply(op, [x.tensor], padding=(top, left), **attrs)
    else:  # explicit padding, then a pool without padding
        fill = -np.inf if op == "max_pool2d" else 0.0
        pad_attrs = dict(pads=((0, 0), (0, 0), (top, bottom), (left, right)))
        padded = ctx.apply("pad", [x.tensor], value=fill, **pad_attrs)
        if op == "avg_pool2d" and not count_include_pad:
            # the window sums over the count of real pixels: avg(padded x) / avg(padded 1s)
            attrs["count_include_pad"] = True
            ones = ctx.apply("pad", [constant(np.ones((1, 1) + in_hw, np.float32))],
                             value=0.0, **pad_attrs)
            y = ctx.apply("div", [ctx.apply(op, [padded], padding=(0, 0), **attrs),
                                  ctx.apply(op, [ones], padding=(0, 0), **attrs)])
        else:
            y = ctx.apply(op, [padded], padding=(0, 0), **attrs)
    if y.type.shape[2:] != want:
        raise ctx.error(f"with pads {list(pads)} (top, bottom, left, right) and ceil_mode, "
                        f"ONNX's output is {want} but graphcnn's pooling gives "
                        f"{y.type.shape[2:]}; not supported")
    return [Runtime(y, x.batch_axis)]


def _dilated_average(ctx: ImportContext, x: Runtime, kernel: tuple[int, int],
                     strides: tuple[int, int], dilations: tuple[int, int],
                     pads: tuple[int, int, int, int], count_include_pad: bool,
                     want: tuple[int, ...]) -> Runtime:
    """AveragePool with dilations: the window sums as a depthwise conv2d by ones (it has
    dilations), over the count of its taps, or of its taps on real pixels where
    count_include_pad=0 (the same conv on a mask of ones)."""
    channels = x.tensor.type.shape[1]
    in_hw = x.tensor.type.shape[2:]
    ones = constant(np.ones((channels, 1) + kernel, np.float32))
    attrs = dict(stride=strides, padding=pads, dilation=dilations)
    sums = ctx.apply("conv2d", [x.tensor, ones], groups=channels, **attrs)
    if sums.type.shape[2:] != want:
        raise ctx.error(f"AveragePool with dilations {dilations} and ceil_mode: ONNX's output "
                        f"is {want} but the dilated window gives {sums.type.shape[2:]}; not "
                        f"supported")
    if count_include_pad:
        return Runtime(ctx.apply("mul", [sums, constant(np.float32(1.0 / math.prod(kernel)))]),
                       x.batch_axis)
    mask = constant(np.ones((1, 1) + in_hw, np.float32))
    counts = ctx.apply("conv2d", [mask, constant(np.ones((1, 1) + kernel, np.float32))],
                       groups=1, **attrs)
    return Runtime(ctx.apply("div", [sums, counts]), x.batch_axis)


@importer("MaxPool", limits="1-D and 2-D; not the Indices output")
def max_pool(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    if int(node.attrs.get("storage_order", 0)) not in (0, 1):
        raise ctx.error("bad storage_order")
    return _pool(ctx, node, ins, "max_pool2d")   # the Indices output is not supported


@importer("AveragePool", limits="1-D and 2-D; dilations with a ceil_mode window refused")
def average_pool(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    return _pool(ctx, node, ins, "avg_pool2d")


@importer("GlobalAveragePool")
def global_average_pool(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    x = _spatial_input(ctx, ins[0], "GlobalAveragePool")
    return [Runtime(ctx.apply("global_avg_pool2d", [x.tensor]), x.batch_axis)]


@importer("GlobalMaxPool")
def global_max_pool(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    x = _spatial_input(ctx, ins[0], "GlobalMaxPool")
    hw = x.tensor.type.shape[2:]
    return [Runtime(ctx.apply("max_pool2d", [x.tensor], kernel_size=hw, stride=hw),
                    x.batch_axis)]


# ---- batch normalization --------------------------------------------------------------------

@importer("BatchNormalization", limits="inference mode; input (N, C, ...)")
def batch_normalization(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    if int(node.attrs.get("training_mode", 0)):
        raise ctx.error("training_mode=1 is not supported (graphcnn imports inference "
                        "graphs; it trains with its own batch norm)")
    x = ctx.runtime(ins[0], "X")
    if x.ndim < 2:
        raise ctx.error(f"the input must be (N, C, ...), got shape {x.shape_at(PROBES[0])}")
    ctx.check_batch_first(x, "BatchNormalization")
    names = ("scale", "B", "input_mean", "input_var")
    params = [ctx.tensor(ins[k], names[k - 1]) for k in range(1, 5)
              if k < len(ins) and ins[k] is not None]
    if len(params) != 4:
        raise ctx.error("scale, B, mean and var are all required")
    momentum = float(node.attrs.get("momentum", 0.9))  # ONNX: running = running * momentum + ...
    y = ctx.apply("batch_norm", [x.tensor] + params, eps=float(node.attrs.get("epsilon", 1e-5)),
                  momentum=1.0 - momentum)
    return [Runtime(y, x.batch_axis)]


# ---- dense ------------------------------------------------------------------------------------

def _matrix(ctx: ImportContext, value: Any, what: str, transposed: bool) -> Runtime:
    r = ctx.runtime(value, what)
    if r.ndim != 2:
        raise ctx.error(f"{what} must be 2-D, got shape {r.shape_at(PROBES[0])}")
    if r.batch_axis not in (None, 0) or (r.batch_axis == 0 and transposed):
        raise ctx.error(f"{what} carries the batch on axis {r.batch_axis}"
                        f"{' (transposed)' if transposed else ''}; graphcnn needs it on the "
                        f"rows of A")
    return r


@importer("Gemm", limits="B independent of a dynamic batch")
def gemm(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    alpha = float(node.attrs.get("alpha", 1.0))
    beta = float(node.attrs.get("beta", 1.0))
    trans_a = bool(node.attrs.get("transA", 0))
    trans_b = bool(node.attrs.get("transB", 0))
    a = _matrix(ctx, ins[0], "A", trans_a)
    b = _matrix(ctx, ins[1], "B", True)
    c = ins[2] if len(ins) > 2 else None
    if b.batch_axis is not None:
        raise ctx.error("B must not depend on the batch")
    bias = ctx.tensor(c, "C") if c is not None else None
    out_features = b.tensor.type.shape[0 if trans_b else 1]
    if not trans_a and trans_b and alpha == 1.0 and (bias is None or (
            beta == 1.0 and bias.type.shape == (out_features,))):
        inputs = [a.tensor, b.tensor] + ([bias] if bias is not None else [])
        return [Runtime(ctx.apply("linear", inputs), a.batch_axis)]
    y = ctx.apply("matmul", [a.tensor, b.tensor], trans_a=trans_a, trans_b=trans_b)
    if alpha != 1.0:
        y = ctx.apply("mul", [y, constant(np.float32(alpha))])
    out = Runtime(y, a.batch_axis)
    if bias is not None:
        if beta != 1.0:
            bias = ctx.apply("mul", [bias, constant(np.float32(beta))])
        out = ctx.binary("add", out, Runtime(bias, None))
    return [out]


@importer("MatMul", limits="stacks of matrices only in fixed-batch files")
def matmul(ctx: ImportContext, node: OnnxNode, ins: Values) -> list[Any]:
    """numpy.matmul: a 1-D operand gets a unit axis that the output drops again."""
    a = ctx.runtime(ins[0], "A")
    b = ctx.runtime(ins[1], "B")
    if a.ndim == 0 or b.ndim == 0:
        raise ctx.error("MatMul of a scalar")
    if b.ndim == 1:
        y = _matmul(ctx, a, ctx.reshape_to(b, [b.shape_at(p) + (1,) for p in PROBES]))
        return [ctx.reshape_to(y, [y.shape_at(p)[:-1] for p in PROBES])]
    if a.ndim == 1:
        y = _matmul(ctx, ctx.reshape_to(a, [(1,) + a.shape_at(p) for p in PROBES]), b)
        return [ctx.reshape_to(y, [y.shape_at(p)[:-2] + y.shape_at(p)[-1:] for p in PROBES])]
    return [_matmul(ctx, a, b)]


_MAX_MATRICES = 1024   # stacks of matrices are multiplied one pair at a time


def _matmul(ctx: ImportContext, a: Runtime, b: Runtime) -> Runtime:
    if b.ndim == 2 and b.batch_axis is None:
        if a.ndim == 2:
            a2 = _matrix(ctx, a, "A", False)
            return Runtime(ctx.apply("matmul", [a2.tensor, b.tensor]), a2.batch_axis)
        # (..., K) @ (K, M): as (-1, K) @ (K, M), then back to (..., M)
        k, m = b.tensor.type.shape
        shapes = [a.shape_at(p) for p in PROBES]
        rows = ctx.reshape_to(a, [(int(np.prod(s[:-1])), k) for s in shapes])
        if rows.batch_axis not in (0, None):
            raise ctx.error("cannot flatten A to rows")
        y = Runtime(ctx.apply("matmul", [rows.tensor, b.tensor]), rows.batch_axis)
        return ctx.reshape_to(y, [s[:-1] + (m,) for s in shapes])
    if a.batch_axis is not None or b.batch_axis is not None:
        raise ctx.error(f"graphcnn multiplies stacks of matrices ({a.shape_at(PROBES[0])} @ "
                        f"{b.shape_at(PROBES[0])} at batch {PROBES[0]}) only in a file with a "
                        f"fixed batch size; here B must be a 2-D matrix that does not depend "
                        f"on the batch")
    sa, sb = a.tensor.type.shape, b.tensor.type.shape
    try:
        lead = tuple(np.broadcast_shapes(sa[:-2], sb[:-2]))
    except ValueError:
        raise ctx.error(f"the stacks of matrices {sa} and {sb} do not broadcast") from None
    if sa[-1] != sb[-2]:
        raise ctx.error(f"cannot multiply {sa} by {sb} (inner sizes {sa[-1]} and {sb[-2]})")
    if math.prod(lead) > _MAX_MATRICES:
        raise ctx.error(f"a stack of {math.prod(lead)} matrix products is more than graphcnn "
                        f"imports ({_MAX_MATRICES})")
    m, n = sa[-2], sb[-1]
    stacks = [ctx.apply("reshape", [r.tensor], shape=(-1,) + r.tensor.type.shape[-2:])
              for r in (a, b)]
    parts = []
    for index in np.ndindex(*lead):
        pair = []
        for r, stack in zip((a, b), stacks):
            own = (1,) * (len(lead) - (r.ndim - 2)) + r.tensor.type.shape[:-2]
            k = int(np.ravel_multi_index(tuple(i if d > 1 else 0 for i, d in zip(index, own)),
                                         own)) if own else 0
            height, width = r.tensor.type.shape[-2:]
            matrix = ctx.apply("slice", [stack], starts=(k, 0, 0), ends=(k + 1, height, width))
            pair.append(ctx.apply("reshape", [matrix], shape=(height, width)))
        parts.append(ctx.apply("reshape", [ctx.apply("matmul", pair)], shape=(1, m, n)))
    stacked = parts[0] if len(parts) == 1 else ctx.apply("concat", parts, axis=0)
    return Runtime(ctx.apply("reshape", [stacked], shape=lead + (m, n)), None)
