"""Sliding-window geometry shared by convolution and pooling: attribute converters for
padding, and the output-size rules (PyTorch's, including ceil_mode)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from graphcnn.errors import ShapeError

Padding4 = tuple[int, int, int, int]  # (top, bottom, left, right)


def conv_padding(value: Any) -> "Padding4 | str":
    """int -> all sides; (pH, pW) -> symmetric; (top, bottom, left, right) as is;
    'valid' -> zeros; 'same' stays symbolic until the kernel size is known
    (see `resolve_same`). Idempotent: a 4-tuple converts to itself."""
    if isinstance(value, str):
        mode = value.lower()
        if mode == "valid":
            return (0, 0, 0, 0)
        if mode == "same":
            return "same"
        raise ShapeError(f"padding must be an int, a tuple, 'same' or 'valid', got {value!r}")
    if isinstance(value, (int, np.integer)):
        pads = (int(value),) * 4
    else:
        values = tuple(int(v) for v in value)
        if len(values) == 2:
            pads = (values[0], values[0], values[1], values[1])
        elif len(values) == 4:
            pads = values
        else:
            raise ShapeError(f"padding must have 1, 2 or 4 values, got {tuple(value)}")
    if min(pads) < 0:
        raise ShapeError(f"padding must be non-negative, got {pads}")
    return pads


def resolve_same(in_hw: tuple[int, ...], kernel_hw: tuple[int, ...], stride: tuple[int, int],
                 dilation: tuple[int, int]) -> Padding4:
    """'same' padding: output size ceil(in / stride), the odd pixel at the bottom/right
    (PyTorch's rule at stride 1, TensorFlow's at any stride)."""
    pads: list[int] = []
    for size, k, s, d in zip(in_hw, kernel_hw, stride, dilation):
        out = math.ceil(size / s)
        total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
        pads += [total // 2, total - total // 2]
    return (pads[0], pads[1], pads[2], pads[3])


def conv_out_size(size: int, pad_before: int, pad_after: int, k: int, s: int, d: int) -> int:
    return (size + pad_before + pad_after - d * (k - 1) - 1) // s + 1


def pool_out_size(size: int, pad: int, k: int, s: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size: with ceil_mode the last window may hang over the
    end, but it must start inside the input or the left padding."""
    span = size + 2 * pad - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + pad:
        out -= 1
    return out


def check_window_fits(in_hw: tuple[int, ...], pads: Padding4, kernel_hw: tuple[int, ...],
                      dilation: tuple[int, int]) -> None:
    padded = (in_hw[0] + pads[0] + pads[1], in_hw[1] + pads[2] + pads[3])
    effective = tuple(d * (k - 1) + 1 for k, d in zip(kernel_hw, dilation))
    if effective[0] > padded[0] or effective[1] > padded[1]:
        dil = f" (dilated to {effective})" if tuple(dilation) != (1, 1) else ""
        raise ShapeError(f"kernel {tuple(kernel_hw)}{dil} is larger than the padded input "
                         f"{padded} (input {tuple(in_hw)}, padding {pads})")
