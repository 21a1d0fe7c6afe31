"""Functional forms along axes: `gc.split` / `gc.chunk` (torch.split, torch.chunk) and
`gc.mean` / `gc.sum` over any axes but the batch.

They record existing ops, so each has its reference, VJP and kernels on every backend
already: a split is one `slice` per part; a mean is `global_avg_pool2d` over the reduced
axes gathered into one (a transpose when they are not the last ones, then reshapes that
keep the batch symbolic), and a sum is that mean times the count. The batch axis (0) is
bound at compile time, so it cannot be split or reduced here: that is a loss's job.
"""
from __future__ import annotations

import builtins
import math
import numbers
from typing import Any, Sequence

from graphcnn.arguments import check_bool, check_int
from graphcnn.dsl import Tensor, apply, user_location
from graphcnn.errors import ArgumentError, ArgumentTypeError, GraphBuildError


def _axis(x: Tensor, axis: Any, owner: str) -> int:
    """`axis` (negative counts from the end) as 1..ndim-1; the batch axis is refused."""
    ndim = x.type.ndim
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise ArgumentTypeError(f"{owner}: axis must be an int, got {axis!r}")
    index = int(axis)
    if not -ndim <= index < ndim:
        raise ArgumentError(f"{owner}: axis {index} is out of range for a {ndim}-D tensor "
                            f"of shape {x.shape} (valid: {-ndim} to {ndim - 1})")
    index %= ndim
    if index == 0 and x.op not in ("param", "constant"):
        raise GraphBuildError(f"{owner}: axis 0 is the batch axis, which is bound at "
                              f"compile time; use axes 1 to {ndim - 1} of shape {x.shape} "
                              f"(at {user_location()})")
    return index


def _tensor(x: object, owner: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise ArgumentTypeError(f"{owner}: expects a graphcnn Tensor, got "
                                f"{type(x).__name__}")
    return x


def _slices(x: Tensor, axis: int, sizes: Sequence[int]) -> list[Tensor]:
    parts, offset = [], 0
    for size in sizes:
        starts = [0] * x.type.ndim
        ends = list(x.type.shape)
        starts[axis], ends[axis] = offset, offset + size
        offset += size
        parts.append(apply("slice", [x], starts=tuple(starts), ends=tuple(ends)))
    return parts


def split(x: Tensor, split_size_or_sections: int | Sequence[int], axis: int = 1
          ) -> list[Tensor]:
    """Split x along `axis` as torch.split: an int is the size of each part (the last may
    be smaller), a list gives every part's size (they must add up to the axis's size).

    >>> import graphcnn as gc
    >>> a, b = gc.split(gc.Input((6, 4, 4)), [2, 4])
    >>> a.shape, b.shape
    ((None, 2, 4, 4), (None, 4, 4, 4))
    """
    owner = "split"
    x = _tensor(x, owner)
    axis = _axis(x, axis, owner)
    total = x.type.shape[axis]
    if isinstance(split_size_or_sections, numbers.Integral) and \
            not isinstance(split_size_or_sections, bool):
        size = check_int("split_size", split_size_or_sections, owner=owner)
        sizes = [min(size, total - start) for start in range(0, total, size)] or [0]
    elif isinstance(split_size_or_sections, Sequence) and \
            not isinstance(split_size_or_sections, (str, bytes)):
        sizes = [check_int(f"sections[{i}]", s, 0, owner=owner)
                 for i, s in enumerate(split_size_or_sections)]
        if builtins.sum(sizes) != total:
            raise ArgumentError(f"{owner}: sections {tuple(sizes)} add up to {builtins.sum(sizes)}, "
                                f"but axis {axis} of shape {x.shape} has size {total}")
    else:
        raise ArgumentTypeError(f"{owner}: split_size_or_sections must be an int or a list "
                                f"of ints, got {split_size_or_sections!r}")
    return _slices(x, axis, sizes)


def chunk(x: Tensor, chunks: int, axis: int = 1) -> list[Tensor]:
    """Split x along `axis` into `chunks` parts as torch.chunk: parts of
    ceil(size / chunks), so fewer than `chunks` parts may come back."""
    owner = "chunk"
    x = _tensor(x, owner)
    chunks = check_int("chunks", chunks, owner=owner)
    axis = _axis(x, axis, owner)
    total = x.type.shape[axis]
    size = max(1, math.ceil(total / chunks))
    return split(x, size, axis) if total else _slices(x, axis, [0])


def _reduced(x: Tensor, axis: int | Sequence[int] | None, owner: str) -> list[int]:
    if axis is None:
        return list(range(1, x.type.ndim))
    axes: list[Any] | None = None
    if isinstance(axis, numbers.Integral) and not isinstance(axis, bool):
        axes = [axis]
    elif isinstance(axis, Sequence) and not isinstance(axis, (str, bytes)):
        axes = list(axis)
    if axes is None:
        raise ArgumentTypeError(f"{owner}: axis must be an int, a sequence of ints or None, "
                                f"got {axis!r}")
    out = [_axis(x, a, owner) for a in axes]
    if len(set(out)) != len(out):
        raise ArgumentError(f"{owner}: axis {tuple(axes)} names an axis twice")
    return sorted(out)


def mean(x: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False
         ) -> Tensor:
    """The mean over `axis` (an int or a sequence; None: every axis but the batch), as
    torch.mean(x, dim, keepdim). The batch axis cannot be reduced.

    >>> import graphcnn as gc
    >>> gc.mean(gc.Input((3, 4, 5)), axis=(2, 3), keepdims=True).shape
    (None, 3, 1, 1)
    """
    return _reduce(x, axis, keepdims, "mean")


def sum(x: Tensor, axis: int | Sequence[int] | None = None, keepdims: bool = False
        ) -> Tensor:
    """The sum over `axis`, as `mean` (torch.sum(x, dim, keepdim))."""
    return _reduce(x, axis, keepdims, "sum")


def _reduce(x: Tensor, axis: int | Sequence[int] | None, keepdims: bool, owner: str
            ) -> Tensor:
    x = _tensor(x, owner)
    keepdims = check_bool("keepdims", keepdims, owner=owner)
    if x.type.ndim < 2:
        raise GraphBuildError(f"{owner}: expects a tensor with axes beyond the batch, got "
                              f"shape {x.shape} (at {user_location()})")
    if not x.type.is_float:
        raise GraphBuildError(f"{owner}: expects a float tensor, got {x.dtype}")
    axes = _reduced(x, axis, owner)
    shape = x.type.shape
    kept = [a for a in range(1, len(shape)) if a not in axes]
    count = math.prod(shape[a] for a in axes)
    h = x
    if axes != list(range(len(shape) - len(axes), len(shape))):   # not the trailing axes
        h = apply("transpose", [h], perm=tuple([0] + kept + axes))
    # (N, kept, reduced, 1): global average pooling over the last two axes is the mean
    h = apply("reshape", [h], shape=(0, math.prod(shape[a] for a in kept), count, 1))
    h = apply("global_avg_pool2d", [h])
    if owner == "sum":
        h = h * float(count)
    out = [0] + [1 if a in axes else shape[a] for a in range(1, len(shape))] if keepdims \
        else [0] + [shape[a] for a in kept]
    return apply("reshape", [h], shape=tuple(out))
