"""Normalization and rearrangement layers, as torch.nn defines them.

    GroupNorm, InstanceNorm2d           the `group_norm` op (InstanceNorm: G = C)
    ReflectionPad2d, ReplicationPad2d   the `mode_pad` op (modes 'reflect', 'edge')
    LocalResponseNorm                   x / (k + alpha * mean of x^2 over a window of
                                        channels) ** beta: mul, pad, avg_pool2d over the
                                        channel axis, pow_scalar, div (torch's own
                                        formulation, so the roundings agree)
    PixelShuffle, PixelUnshuffle        reshape, transpose, reshape (ONNX DepthToSpace /
                                        SpaceToDepth, modes CRD and DCR)

The composed ones are exact because their parts are. The functions take the op-recording
callable, so that the ONNX importer builds the same graphs through its own context
(which names the ONNX node in errors).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from graphcnn.arguments import check_bool, check_int, check_ints, check_number
from graphcnn.dsl import Tensor, apply, constant, user_location
from graphcnn.errors import ArgumentError
from graphcnn.nn.module import Layer
from graphcnn.ops.pad_modes import mode_pad_problem

Apply = Callable[..., Tensor]


# ---- local response norm ---------------------------------------------------------------

def local_response_norm(x: Tensor, size: int, alpha: float, beta: float, k: float,
                        before: int | None = None, op: Apply = apply) -> Tensor:
    """y[c] = x[c] / (k + alpha / size * sum of x[c']^2, c' in [c - before, c - before +
    size)) ** beta; `before` is size // 2 in torch, (size - 1) // 2 in ONNX (they differ
    for an even size). Zero padding: the window past either end of the channels counts 0."""
    before = size // 2 if before is None else before
    shape = x.type.shape
    channels = shape[1]
    sq = op("mul", [x, x])
    planes = op("reshape", [sq], shape=(0, 1, channels, -1))
    padded = op("pad", [planes], pads=((0, 0), (0, 0), (before, size - 1 - before), (0, 0)))
    mean = op("avg_pool2d", [padded], kernel_size=(size, 1), stride=(1, 1), padding=(0, 0))
    power = op("pow_scalar", [mean], exponent=beta, scale=alpha, shift=k)
    div = op("reshape", [power], shape=(0,) + shape[1:])
    return op("div", [x, div])


class LocalResponseNorm(Layer):
    """torch.nn.LocalResponseNorm(size, alpha=1e-4, beta=0.75, k=1.0) over axis 1."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0,
                 name: str | None = None) -> None:
        super().__init__(name)
        owner = "LocalResponseNorm"
        self.size = check_int("size", size, owner=owner)
        self.alpha = check_number("alpha", alpha, owner=owner)
        self.beta = check_number("beta", beta, owner=owner)
        self.k = check_number("k", k, owner=owner)

    def forward(self, x: Tensor) -> Tensor:
        if x.type.ndim < 3:
            raise ArgumentError(f"LocalResponseNorm needs an (N, C, ...) input with at least "
                                f"3 axes (as torch), got shape {x.shape} (at "
                                f"{user_location()})")
        return local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


# ---- group norm, instance norm ---------------------------------------------------------

class GroupNorm(Layer):
    """torch.nn.GroupNorm(num_groups, num_channels, eps=1e-5, affine=True)."""

    owner = "GroupNorm"

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, name: str | None = None) -> None:
        super().__init__(name)
        self.num_groups = check_int("num_groups", num_groups, owner=self.owner)
        self.num_channels = check_int("num_channels", num_channels, owner=self.owner)
        if self.num_channels % self.num_groups:
            raise ArgumentError(f"{self.owner}: num_channels ({num_channels}) must be "
                                f"divisible by num_groups ({num_groups}) (at {user_location()})")
        self.eps = check_number("eps", eps, low=0.0, owner=self.owner)
        self.affine = check_bool("affine", affine, owner=self.owner)
        if self.affine:
            self.add_parameter("weight", np.ones(self.num_channels, np.float32))
            self.add_parameter("bias", np.zeros(self.num_channels, np.float32))

    def forward(self, x: Tensor) -> Tensor:
        if x.type.ndim < 2 or x.type.shape[1] != self.num_channels:
            raise ArgumentError(f"{self.owner}({self.num_channels} channels) got an input of "
                                f"shape {x.shape} (at {user_location()})")
        if self.affine:
            params = [self.param("weight"), self.param("bias")]
        else:   # the identity affine: constants, so no parameter and no trained gradient
            dtype = x.type.dtype
            params = [constant(np.ones(self.num_channels, dtype)),
                      constant(np.zeros(self.num_channels, dtype))]
        return apply("group_norm", [x] + params, num_groups=self.num_groups, eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class InstanceNorm2d(GroupNorm):
    """torch.nn.InstanceNorm2d(num_features, eps=1e-5, affine=False): each (sample,
    channel) normalized by its own statistics, in training and inference alike (torch's
    default track_running_stats=False)."""

    owner = "InstanceNorm2d"

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = False,
                 name: str | None = None) -> None:
        num_features = check_int("num_features", num_features, owner=self.owner)
        super().__init__(num_features, num_features, eps, affine, name)

    def forward(self, x: Tensor) -> Tensor:
        if x.type.ndim != 4:
            raise ArgumentError(f"InstanceNorm2d needs an (N, C, H, W) input, got shape "
                                f"{x.shape} (at {user_location()})")
        if x.type.shape[2] * x.type.shape[3] == 1:
            raise ArgumentError(f"InstanceNorm2d needs more than 1 spatial element, got "
                                f"input shape {x.shape} (as torch; at {user_location()})")
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}"

    @property
    def num_features(self) -> int:
        return self.num_channels


# ---- pixel shuffle ---------------------------------------------------------------------

def depth_to_space(x: Tensor, r: int, mode: str = "CRD", op: Apply = apply) -> Tensor:
    """(N, C, H, W) -> (N, C / r^2, H r, W r). CRD: torch's PixelShuffle; DCR: ONNX's
    DepthToSpace default (the block offsets are the outer part of the channel index)."""
    _, c, h, w = x.type.shape
    out_c = c // (r * r)
    if mode == "CRD":
        blocks = op("reshape", [x], shape=(0, out_c, r, r, h, w))
        moved = op("transpose", [blocks], perm=(0, 1, 4, 2, 5, 3))
    else:
        blocks = op("reshape", [x], shape=(0, r, r, out_c, h, w))
        moved = op("transpose", [blocks], perm=(0, 3, 4, 1, 5, 2))
    return op("reshape", [moved], shape=(0, out_c, h * r, w * r))


def space_to_depth(x: Tensor, r: int, mode: str = "CRD", op: Apply = apply) -> Tensor:
    """(N, C, H, W) -> (N, C r^2, H / r, W / r), the inverse of depth_to_space in the same
    mode. CRD: torch's PixelUnshuffle; DCR: ONNX's SpaceToDepth default."""
    _, c, h, w = x.type.shape
    blocks = op("reshape", [x], shape=(0, c, h // r, r, w // r, r))
    perm = (0, 1, 3, 5, 2, 4) if mode == "CRD" else (0, 3, 5, 1, 2, 4)
    moved = op("transpose", [blocks], perm=perm)
    return op("reshape", [moved], shape=(0, c * r * r, h // r, w // r))


def _check_4d(x: Tensor, owner: str) -> tuple[int, int, int]:
    if x.type.ndim != 4:
        raise ArgumentError(f"{owner} needs an (N, C, H, W) input, got shape {x.shape} "
                            f"(at {user_location()})")
    _, c, h, w = x.type.shape
    return c, h, w


class PixelShuffle(Layer):
    """torch.nn.PixelShuffle(upscale_factor)."""

    def __init__(self, upscale_factor: int, name: str | None = None) -> None:
        super().__init__(name)
        self.upscale_factor = check_int("upscale_factor", upscale_factor, owner="PixelShuffle")

    def forward(self, x: Tensor) -> Tensor:
        c, _, _ = _check_4d(x, "PixelShuffle")
        r = self.upscale_factor
        if c % (r * r):
            raise ArgumentError(f"PixelShuffle({r}): the {c} input channels (shape {x.shape}) "
                                f"are not divisible by {r * r} (at {user_location()})")
        return depth_to_space(x, r, "CRD")

    def extra_repr(self) -> str:
        return f"upscale_factor={self.upscale_factor}"


class PixelUnshuffle(Layer):
    """torch.nn.PixelUnshuffle(downscale_factor)."""

    def __init__(self, downscale_factor: int, name: str | None = None) -> None:
        super().__init__(name)
        self.downscale_factor = check_int("downscale_factor", downscale_factor,
                                          owner="PixelUnshuffle")

    def forward(self, x: Tensor) -> Tensor:
        _, h, w = _check_4d(x, "PixelUnshuffle")
        r = self.downscale_factor
        if h % r or w % r:
            raise ArgumentError(f"PixelUnshuffle({r}): the height and width of shape "
                                f"{x.shape} are not divisible by {r} (at {user_location()})")
        return space_to_depth(x, r, "CRD")

    def extra_repr(self) -> str:
        return f"downscale_factor={self.downscale_factor}"


# ---- reflection / replication padding (the mode_pad op) ---------------------------------

def pad_modes(x: Tensor, pads: Sequence[tuple[int, int]], mode: str,
              op: Apply = apply) -> Tensor:
    """x padded by `pads` ((before, after) per axis) in `mode`: 'reflect', 'edge' or
    'wrap' (graphcnn/ops/pad_modes.py)."""
    return op("mode_pad", [x], pads=tuple(pads), mode=mode)


class _ModePad2d(Layer):
    mode = ""
    owner = ""

    def __init__(self, padding: int | Sequence[int], name: str | None = None) -> None:
        super().__init__(name)
        self.padding = check_ints("padding", padding, (4,), minimum=0, owner=self.owner)

    def forward(self, x: Tensor) -> Tensor:
        if x.type.ndim not in (3, 4):
            raise ArgumentError(f"{self.owner} needs an (N, C, H, W) or (N, H, W) input, got "
                                f"shape {x.shape} (at {user_location()})")
        left, right, top, bottom = self.padding
        pads = [(0, 0)] * (x.type.ndim - 2) + [(top, bottom), (left, right)]
        problem = mode_pad_problem(x.type.shape, tuple(pads), self.mode)
        if problem:
            raise ArgumentError(f"{self.owner}{self.padding}: {problem} (input shape "
                                f"{x.shape}; at {user_location()})")
        return pad_modes(x, pads, self.mode)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class ReflectionPad2d(_ModePad2d):
    """torch.nn.ReflectionPad2d(padding): an int or (left, right, top, bottom)."""

    mode, owner = "reflect", "ReflectionPad2d"


class ReplicationPad2d(_ModePad2d):
    """torch.nn.ReplicationPad2d(padding): an int or (left, right, top, bottom)."""

    mode, owner = "edge", "ReplicationPad2d"
