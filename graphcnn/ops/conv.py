"""2-D convolution (NCHW, PyTorch's weight layout (O, C/groups, kH, kW)) and its two
gradient ops. The three are bilinear maps adjoint to one another, so each one's VJP is
written with the other two: second-order gradients come for free.

    conv2d(x, w)              y[n,o]  = sum_{c,i,j} x[n, c, oh*s + i*d - pad, ...] w[o,c,i,j]
    conv2d_input_grad(dy, w)  the transpose of conv2d in x  (a "transposed convolution")
    conv2d_weight_grad(dy, x) the transpose of conv2d in w
"""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.errors import ShapeError
from graphcnn.ir.types import TensorType
from graphcnn.ops.registry import (
    Attr,
    FusionKind,
    as_int_pair,
    expect_float,
    expect_ndim,
    positive_pair,
    register_op,
)
from graphcnn.ops.window import check_window_fits, conv_out_size, conv_padding, resolve_same


def _positive_int(name: str) -> Any:
    def convert(value: Any) -> int:
        value = int(value)
        if value < 1:
            raise ShapeError(f"{name} must be >= 1, got {value}")
        return value
    return convert


CONV_ATTRS = {
    "stride": Attr((1, 1), positive_pair("stride")),
    "padding": Attr((0, 0, 0, 0), conv_padding),
    "dilation": Attr((1, 1), positive_pair("dilation")),
    "groups": Attr(1, _positive_int("groups")),
}


def conv_canonicalize(in_types: list[TensorType], attrs: dict[str, Any]) -> dict[str, Any]:
    """Resolve padding='same' once the input and kernel sizes are known."""
    if attrs["padding"] == "same" and len(in_types) >= 2 and in_types[0].ndim == 4 \
            and in_types[1].ndim == 4:
        attrs = dict(attrs, padding=resolve_same(in_types[0].shape[2:], in_types[1].shape[2:],
                                                 attrs["stride"], attrs["dilation"]))
    return attrs


def _out_hw(in_hw: tuple[int, ...], kernel_hw: tuple[int, ...], attrs: dict[str, Any]
            ) -> tuple[int, int]:
    pad, s, d = attrs["padding"], attrs["stride"], attrs["dilation"]
    return (conv_out_size(in_hw[0], pad[0], pad[1], kernel_hw[0], s[0], d[0]),
            conv_out_size(in_hw[1], pad[2], pad[3], kernel_hw[1], s[1], d[1]))


def conv2d_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    x, w = in_types[0], in_types[1]
    expect_float(x, "input")
    expect_ndim(x, 4, "conv2d input", "N, C, H, W")
    expect_ndim(w, 4, "conv2d weight", "out_channels, in_channels/groups, kH, kW")
    if w.dtype != x.dtype:
        raise ShapeError(f"input is {x.dtype} but the weight is {w.dtype}")
    groups = attrs["groups"]
    out_c, per_group = w.shape[0], w.shape[1]
    if x.shape[1] % groups or out_c % groups:
        raise ShapeError(f"groups={groups} must divide the input channels ({x.shape[1]}) and "
                         f"the output channels ({out_c})")
    if x.shape[1] != per_group * groups:
        raise ShapeError(
            f"input has {x.shape[1]} channels (shape {x.shape}) but the weight {w.shape} "
            f"expects {per_group * groups} (in_channels/groups={per_group} x groups={groups})")
    if len(in_types) == 3 and in_types[2].shape != (out_c,):
        raise ShapeError(f"bias must have shape ({out_c},), got {in_types[2].shape}")
    check_window_fits(x.shape[2:], attrs["padding"], w.shape[2:], attrs["dilation"])
    return TensorType((x.shape[0], out_c) + _out_hw(x.shape[2:], w.shape[2:], attrs), x.dtype)


# ---- the NumPy reference, in float64 -------------------------------------------------

def _tap(xp: np.ndarray, i: int, j: int, out_hw: tuple[int, int], attrs: dict[str, Any]
         ) -> np.ndarray:
    """The view of the padded input that kernel tap (i, j) multiplies: (..., OH, OW)."""
    (sh, sw), (dh, dw) = attrs["stride"], attrs["dilation"]
    top, left = i * dh, j * dw
    return xp[..., top:top + sh * (out_hw[0] - 1) + 1:sh, left:left + sw * (out_hw[1] - 1) + 1:sw]


def _padded(x: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    return np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[1]), (pads[2], pads[3])))


def _grouped_weight(w: np.ndarray, groups: int) -> np.ndarray:
    out_c, per_group, kh, kw = w.shape
    return w.astype(np.float64).reshape(groups, out_c // groups, per_group, kh, kw)


def conv2d_ref(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None, **attrs: Any
               ) -> np.ndarray:
    n, c, h, wd = x.shape
    groups = attrs["groups"]
    out_hw = _out_hw((h, wd), w.shape[2:], attrs)
    xp = _padded(x, attrs["padding"]).reshape(n, groups, c // groups, *(_pad_hw(x, attrs)))
    wg = _grouped_weight(w, groups)
    y = np.zeros((n, groups, w.shape[0] // groups) + out_hw)
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            y += np.einsum("ngcyx,goc->ngoyx", _tap(xp, i, j, out_hw, attrs), wg[..., i, j])
    y = y.reshape(n, w.shape[0], *out_hw)
    if b is not None:
        y += b.astype(np.float64)[None, :, None, None]
    return y.astype(x.dtype)


def _pad_hw(x: np.ndarray, attrs: dict[str, Any]) -> tuple[int, int]:
    p = attrs["padding"]
    return (x.shape[2] + p[0] + p[1], x.shape[3] + p[2] + p[3])


def conv2d_input_grad_ref(dy: np.ndarray, w: np.ndarray, input_hw: tuple[int, int],
                          **attrs: Any) -> np.ndarray:
    n, groups = dy.shape[0], attrs["groups"]
    c = w.shape[1] * groups
    p = attrs["padding"]
    padded_hw = (input_hw[0] + p[0] + p[1], input_hw[1] + p[2] + p[3])
    dxp = np.zeros((n, groups, c // groups) + padded_hw)
    dyg = dy.astype(np.float64).reshape(n, groups, -1, *dy.shape[2:])
    wg = _grouped_weight(w, groups)
    for i in range(w.shape[2]):
        for j in range(w.shape[3]):
            _tap(dxp, i, j, dy.shape[2:], attrs)[...] += np.einsum(
                "ngoyx,goc->ngcyx", dyg, wg[..., i, j])
    dx = dxp.reshape(n, c, *padded_hw)[:, :, p[0]:p[0] + input_hw[0], p[2]:p[2] + input_hw[1]]
    return np.ascontiguousarray(dx).astype(dy.dtype)


def conv2d_weight_grad_ref(dy: np.ndarray, x: np.ndarray, kernel_hw: tuple[int, int],
                           **attrs: Any) -> np.ndarray:
    n, c = x.shape[:2]
    groups, out_c = attrs["groups"], dy.shape[1]
    xp = _padded(x, attrs["padding"]).reshape(n, groups, c // groups, *_pad_hw(x, attrs))
    dyg = dy.astype(np.float64).reshape(n, groups, out_c // groups, *dy.shape[2:])
    dw = np.zeros((groups, out_c // groups, c // groups) + tuple(kernel_hw))
    for i in range(kernel_hw[0]):
        for j in range(kernel_hw[1]):
            dw[..., i, j] = np.einsum("ngoyx,ngcyx->goc", dyg, _tap(xp, i, j, dy.shape[2:], attrs))
    return dw.reshape(out_c, c // groups, *kernel_hw).astype(dy.dtype)


# ---- gradient ops ----------------------------------------------------------------------

def _conv_attrs(node: Any) -> dict[str, Any]:
    return {k: node.attrs[k] for k in CONV_ATTRS}


def conv2d_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    g = cot[0]
    x, w = node.inputs[0], node.inputs[1]
    attrs = _conv_attrs(node)
    grads = [graph.add("conv2d_input_grad", [g, w], input_hw=x.shape[2:], **attrs),
             graph.add("conv2d_weight_grad", [g, x], kernel_hw=w.shape[2:], **attrs)]
    if len(node.inputs) == 3:
        out_c = w.shape[0]
        per_channel = graph.add("sum_to", [g], shape=(1, out_c, 1, 1))
        grads.append(graph.add("reshape", [per_channel], shape=(out_c,)))
    return grads


def _check_dy(dy: TensorType, in_hw: tuple[int, ...], kernel_hw: tuple[int, ...],
              out_c: int, attrs: dict[str, Any]) -> None:
    expect_ndim(dy, 4, "output gradient", "N, O, OH, OW")
    want = (out_c,) + _out_hw(in_hw, kernel_hw, attrs)
    if dy.shape[1:] != want:
        raise ShapeError(f"output gradient has shape {dy.shape}, expected (N,) + {want}")


def conv2d_input_grad_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    dy, w = in_types
    expect_float(dy, "output gradient")
    expect_ndim(w, 4, "conv2d weight")
    _check_dy(dy, attrs["input_hw"], w.shape[2:], w.shape[0], attrs)
    return TensorType((dy.shape[0], w.shape[1] * attrs["groups"]) + attrs["input_hw"], dy.dtype)


def conv2d_weight_grad_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    dy, x = in_types
    expect_float(dy, "output gradient")
    expect_ndim(x, 4, "conv2d input")
    if x.shape[1] % attrs["groups"]:
        raise ShapeError(f"groups={attrs['groups']} must divide the input channels {x.shape[1]}")
    _check_dy(dy, x.shape[2:], attrs["kernel_hw"], dy.shape[1], attrs)
    if dy.shape[0] != x.shape[0]:
        raise ShapeError(f"batch sizes differ: output gradient {dy.shape}, input {x.shape}")
    return TensorType((dy.shape[1], x.shape[1] // attrs["groups"]) + attrs["kernel_hw"],
                      dy.dtype)


def conv2d_input_grad_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    # dx = T(dy, w) is linear in each: <c, T(dy, w)> = <conv2d(c, w), dy>.
    c = cot[0]
    dy, w = node.inputs
    attrs = _conv_attrs(node)
    return [graph.add("conv2d", [c, w], **attrs),
            graph.add("conv2d_weight_grad", [dy, c], kernel_hw=w.shape[2:], **attrs)]


def conv2d_weight_grad_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    # dw = W(dy, x): <c, W(dy, x)> = <dy, conv2d(x, c)>.
    c = cot[0]
    dy, x = node.inputs
    attrs = _conv_attrs(node)
    return [graph.add("conv2d", [x, c], **attrs),
            graph.add("conv2d_input_grad", [dy, c], input_hw=x.shape[2:], **attrs)]


register_op("conv2d", inputs=("x", "weight", "bias?"), shape=conv2d_shape, ref=conv2d_ref,
            vjp=conv2d_vjp, kind=FusionKind.OUT_ELEMWISE_FUSABLE, attrs=CONV_ATTRS,
            canonicalize=conv_canonicalize,
            doc="2-D convolution, NCHW; padding is (top, bottom, left, right) once built.")
register_op("conv2d_input_grad", inputs=("dy", "weight"), shape=conv2d_input_grad_shape,
            ref=conv2d_input_grad_ref, vjp=conv2d_input_grad_vjp,
            kind=FusionKind.OUT_ELEMWISE_FUSABLE,
            attrs=dict(CONV_ATTRS, input_hw=Attr(convert=as_int_pair("input_hw"))),
            doc="Gradient of conv2d in its input (a transposed convolution).")
register_op("conv2d_weight_grad", inputs=("dy", "x"), shape=conv2d_weight_grad_shape,
            ref=conv2d_weight_grad_ref, vjp=conv2d_weight_grad_vjp,
            kind=FusionKind.OUT_ELEMWISE_FUSABLE,
            attrs=dict(CONV_ATTRS, kernel_hw=Attr(convert=positive_pair("kernel_hw"))),
            doc="Gradient of conv2d in its weight.")
