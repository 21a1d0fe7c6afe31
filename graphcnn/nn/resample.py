"""Resampling layers: nn.Upsample and gc.interpolate / gc.upsample (PyTorch's argument
rules and results), and nn.Dropout2d (whole channels dropped in training).

`interpolate(x, size=None, scale_factor=None, mode="nearest", align_corners=None,
recompute_scale_factor=None)` resizes H and W of an (N, C, H, W) tensor:

- exactly one of `size` (an int or (H_out, W_out)) and `scale_factor` (a number or a pair)
  is given; with a scale factor the output is floor(H * scale) and, unless
  recompute_scale_factor=True, the coordinates map with 1 / scale as PyTorch's do;
- mode "nearest": out[y] = in[floor(y * ratio)] (PyTorch's 'nearest', not ONNX's
  round-half-pixel one); mode "bilinear" with align_corners False (the default: pixel
  centres, edges clamped) or True (corner pixels aligned). align_corners is for
  "bilinear" only, as in PyTorch.

Nearest upsampling that repeats each pixel an integer number of times records the
`upsample_nearest2d` op (a strided copy); every other resize records `resize2d`.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import numpy as np

from graphcnn.arguments import check_bool, check_choice, check_number, check_pair
from graphcnn.dsl import Tensor, apply, user_location
from graphcnn.errors import ArgumentError, ArgumentTypeError, GraphBuildError
from graphcnn.nn.module import Layer
from graphcnn.ops.resize import MODES, axis_table

_OWNER = "interpolate"


def _scale_pair(value: Any, owner: str) -> tuple[float, float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (numbers.Real, Sequence)):
        raise ArgumentTypeError(f"{owner}: scale_factor must be a number or a pair of "
                                f"numbers, got {value!r}")
    values = list(value) if isinstance(value, Sequence) else [value, value]
    if len(values) != 2:
        raise ArgumentError(f"{owner}: scale_factor must be a number or a pair (for H and "
                            f"W), got {len(values)} values {tuple(values)!r}")
    return (check_number("scale_factor", values[0], 0.0, low_open=True, owner=owner),
            check_number("scale_factor", values[1], 0.0, low_open=True, owner=owner))


def check_resize_args(size: Any, scale_factor: Any, mode: Any, align_corners: Any,
                      recompute_scale_factor: Any, owner: str
                      ) -> tuple[tuple[int, int] | None, tuple[float, float] | None, str,
                                 bool, bool]:
    """interpolate's arguments checked as PyTorch checks them, normalized:
    (size, scale_factor, mode, align_corners, recompute_scale_factor)."""
    mode = check_choice("mode", mode, MODES, owner=owner)
    if size is not None and scale_factor is not None:
        raise ArgumentError(f"{owner}: only one of size or scale_factor should be defined "
                            f"(got size={size!r} and scale_factor={scale_factor!r})")
    if size is None and scale_factor is None:
        raise ArgumentError(f"{owner}: either size or scale_factor should be defined")
    if align_corners is not None:
        align_corners = check_bool("align_corners", align_corners, owner=owner)
        if mode != "bilinear":
            raise ArgumentError(f"{owner}: align_corners can only be set with the "
                                f"interpolating mode 'bilinear', not with mode {mode!r}")
    recompute = False
    if recompute_scale_factor is not None:
        recompute = check_bool("recompute_scale_factor", recompute_scale_factor, owner=owner)
        if recompute and size is not None:
            raise ArgumentError(f"{owner}: recompute_scale_factor is not meaningful with an "
                                f"explicit size")
    sizes = check_pair("size", size, owner=owner) if size is not None else None
    scales = _scale_pair(scale_factor, owner) if scale_factor is not None else None
    return sizes, scales, mode, bool(align_corners), recompute


def _repeats(in_size: int, out_size: int, scale: float | None) -> int | None:
    """k if PyTorch's nearest index at this size is y // k (each pixel repeated k times),
    else None."""
    if out_size % in_size:
        return None
    k = out_size // in_size
    table = axis_table(in_size, out_size, "nearest", False, scale)
    return k if np.array_equal(table.i0, np.arange(out_size) // k) else None


def interpolate(x: Tensor, size: int | Sequence[int] | None = None,
                scale_factor: float | Sequence[float] | None = None, mode: str = "nearest",
                align_corners: bool | None = None,
                recompute_scale_factor: bool | None = None) -> Tensor:
    """Resize H and W of an (N, C, H, W) tensor as torch.nn.functional.interpolate
    (modes "nearest" and "bilinear"; see the module's docstring).

    >>> import graphcnn as gc
    >>> x = gc.Input((3, 5, 5))
    >>> gc.interpolate(x, scale_factor=1.5, mode="bilinear").shape
    (None, 3, 7, 7)
    """
    return _resize(x, size, scale_factor, mode, align_corners, recompute_scale_factor,
                   _OWNER)


def upsample(x: Tensor, size: int | Sequence[int] | None = None,
             scale_factor: float | Sequence[float] | None = None, mode: str = "nearest",
             align_corners: bool | None = None) -> Tensor:
    """`interpolate` under torch.nn.Upsample's name."""
    return _resize(x, size, scale_factor, mode, align_corners, None, "upsample")


def _resize(x: Tensor, size: Any, scale_factor: Any, mode: Any, align_corners: Any,
            recompute_scale_factor: Any, owner: str) -> Tensor:
    sizes, scales, mode, corners, recompute = check_resize_args(
        size, scale_factor, mode, align_corners, recompute_scale_factor, owner)
    if not isinstance(x, Tensor) or x.type.ndim != 4:
        shape = x.shape if isinstance(x, Tensor) else type(x).__name__
        raise GraphBuildError(f"{owner}: expects an (N, C, H, W) tensor (2-D resizing), "
                              f"got {shape} (at {user_location()})")
    in_hw = x.type.shape[2:]
    if scales is not None:
        # PyTorch: floor(in * scale) in double precision
        sizes = (int(math.floor(in_hw[0] * scales[0])), int(math.floor(in_hw[1] * scales[1])))
        if min(sizes) < 1:
            raise GraphBuildError(
                f"{owner}: scale_factor {scale_factor!r} maps the input's H, W {in_hw} to "
                f"{sizes}; input and output sizes must be greater than 0 "
                f"(at {user_location()})")
    assert sizes is not None
    coord_scales = None if recompute else scales
    if mode == "nearest":
        pair = coord_scales or (None, None)
        reps = [_repeats(i, o, s) for i, o, s in zip(in_hw, sizes, pair)]
        if reps[0] is not None and reps[1] is not None:
            return apply("upsample_nearest2d", [x], scale=(reps[0], reps[1]))
    return apply("resize2d", [x], size=sizes, mode=mode, align_corners=corners,
                 scales=coord_scales)


class Upsample(Layer):
    """Upsamples H and W as torch.nn.Upsample: `size` or `scale_factor`, mode "nearest"
    or "bilinear", align_corners (bilinear only).

    >>> import graphcnn as gc
    >>> from graphcnn import nn
    >>> nn.Upsample(scale_factor=2, mode="bilinear")(gc.Input((3, 4, 4))).shape
    (None, 3, 8, 8)
    """

    def __init__(self, size: int | Sequence[int] | None = None,
                 scale_factor: float | Sequence[float] | None = None, mode: str = "nearest",
                 align_corners: bool | None = None, recompute_scale_factor: bool | None = None,
                 name: str | None = None) -> None:
        super().__init__(name)
        # checked here, so a bad layer fails where it is written
        check_resize_args(size, scale_factor, mode, align_corners, recompute_scale_factor,
                          "Upsample")
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners, self.recompute_scale_factor = align_corners, recompute_scale_factor

    def forward(self, x: Tensor) -> Tensor:
        return _resize(x, self.size, self.scale_factor, self.mode, self.align_corners,
                       self.recompute_scale_factor, "Upsample")

    def extra_repr(self) -> str:
        what = f"size={self.size}" if self.size is not None else \
            f"scale_factor={self.scale_factor}"
        return f"{what}, mode={self.mode!r}"


class Dropout2d(Layer):
    """Zeroes whole channels (each (n, c) plane) with probability p in training, scaling
    the kept ones by 1/(1-p); the identity in inference (torch.nn.Dropout2d). Any
    (N, C, ...) input: the channel axis is 1."""

    def __init__(self, p: float = 0.5, name: str | None = None) -> None:
        super().__init__(name)
        # p = 1 (PyTorch's "drop everything") is refused: the kernels scale by 1 / (1 - p)
        self.p = check_number("p", p, 0.0, 1.0, high_open=True, owner="Dropout2d")

    def forward(self, x: Tensor) -> Tensor:
        if x.type.ndim < 2:
            raise GraphBuildError(f"Dropout2d: expects an (N, C, ...) input, got shape "
                                  f"{x.shape} (at {user_location()})")
        return apply("channel_dropout", [x], p=self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"
