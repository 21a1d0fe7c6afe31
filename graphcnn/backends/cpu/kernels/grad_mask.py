"""A fused clip_grad (or relu_grad) applied by the kernel that writes the gradient.

In a training step the gradient through ReLU6 (clip_grad: g where low < y < high, else 0,
y the activation's output) follows the input gradient of the layer after it, and fusion
makes the two one group. Run as the generated epilogue, the mask is a pass of its own over
the whole gradient, read from memory and written back; a kernel that takes the mask here
applies it to each plane or image it has just written, while that is in its cache
(candidates.Core.store_mask; MobileNet's depthwise and 1x1 input gradients)."""
from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu.registry import JIT, launch

# (y, low, high): y of the gradient's shape and dtype, the bounds finite (the strategy
# passes no other).
Mask = tuple[np.ndarray, float, float]


@numba.njit(inline="always")
def mask_plane(of, yf, start, size, low, high):
    """of[start:start + size] kept where low < yf < high, else 0, the generated epilogue's
    formula. low and high come in of's dtype; high - high is its zero."""
    zero = high - high
    for i in range(size):
        k = uint64(start + i)
        y = yf[k]
        of[k] = of[k] if low < y and y < high else zero


def mask_arguments(out: np.ndarray, mask: Mask | None) -> tuple[bool, np.ndarray, Any, Any]:
    """(masked, y, low, high) for a kernel: the bounds in out's dtype (as clip_grad compares
    them), a one-element y of out's rank where there is no mask (the same array type
    either way: a 1-d placeholder made Numba compile each kernel a second time)."""
    if mask is None:
        return False, np.zeros((1,) * out.ndim, out.dtype), out.dtype.type(0), out.dtype.type(0)
    y, low, high = mask
    return True, np.ascontiguousarray(y, out.dtype), out.dtype.type(low), out.dtype.type(high)


@numba.njit(**JIT)
def _mask_pass(of, yf, low, high):
    for i in prange(of.size):
        y = yf[i]
        of[i] = of[i] if low < y and y < high else high - high


def mask_after(dx: np.ndarray, mask: Mask | None) -> None:
    """The mask as a pass of its own, on the threads, as the generated epilogue's (a
    kernel's fallback that cannot apply it itself: fewer images than threads, non-finite
    weights). dx is contiguous: the kernels' outputs are."""
    if mask is not None:
        _, y, low, high = mask_arguments(dx, mask)
        launch(_mask_pass, dx.reshape(-1), y.reshape(-1), low, high)


@numba.njit(inline="always")
def relu_mask_plane(of, yf, start, size):
    """of[start:start + size] kept where not yf <= 0, else 0: relu_grad's formula (a NaN
    y keeps it, as in PyTorch)."""
    for i in range(size):
        k = uint64(start + i)
        of[k] = of[k] if not yf[k] <= 0 else 0


@numba.njit(**JIT)
def _relu_mask_pass(of, yf):
    for i in prange(of.size):
        of[i] = of[i] if not yf[i] <= 0 else 0


def relu_mask_after(dx: np.ndarray, y: np.ndarray) -> None:
    """relu_grad's mask as a pass of its own, on the threads (a kernel's fallback that
    cannot apply it as it writes); dx and y contiguous, of one shape."""
    launch(_relu_mask_pass, dx.reshape(-1), y.reshape(-1))
