"""upsample_nearest2d: repeat every pixel scale_h x scale_w times (ONNX Resize in nearest
mode with integer scales, torch.nn.Upsample(mode='nearest')). Its VJP sums each
scale_h x scale_w block of the cotangent."""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.ir.types import TensorType
from graphcnn.ops.registry import (
    Attr,
    FusionKind,
    expect_float,
    expect_ndim,
    positive_pair,
    register_op,
)


def upsample_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    x = in_types[0]
    expect_float(x, "input")
    expect_ndim(x, 4, "upsample_nearest2d input", "N, C, H, W")
    sh, sw = attrs["scale"]
    return TensorType(x.shape[:2] + (x.shape[2] * sh, x.shape[3] * sw), x.dtype)


def upsample_ref(x: np.ndarray, scale: tuple[int, int]) -> np.ndarray:
    return np.repeat(np.repeat(x, scale[0], axis=2), scale[1], axis=3)


def upsample_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    # out[n, c, i*sh + a, j*sw + b] = x[n, c, i, j]: the gradient of x sums each block.
    n, c, h, w = node.inputs[0].shape
    sh, sw = node.attrs["scale"]
    blocks = graph.add("reshape", [cot[0]], shape=(n, c, h, sh, w, sw))
    summed = graph.add("sum_to", [blocks], shape=(n, c, h, 1, w, 1))
    return [graph.add("reshape", [summed], shape=(n, c, h, w))]


register_op("upsample_nearest2d", inputs=("x",), shape=upsample_shape, ref=upsample_ref,
            vjp=upsample_vjp, kind=FusionKind.INJECTIVE,
            attrs={"scale": Attr(convert=positive_pair("scale"))},
            doc="Nearest-neighbour upsampling by integer factors (scale_h, scale_w): "
                "out[n, c, y, x] = in[n, c, y // scale_h, x // scale_w].")
