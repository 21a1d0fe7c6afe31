"""Epilogues the convolution kernels apply as they write their output: bias, a residual add
and relu or clip (ResNet's conv + add + relu, MobileNet's conv + clip and conv + add).

A fused group's generated kernel (codegen.py) runs its chain in a second pass over the
conv's output; MobileNetV2's first 1x1 layer at batch 1 writes 4.8 MB that the pass then
reads and writes again. Where the chain is one of these, the conv kernels (packed_gemm,
implicit_gemm, winograd, depthwise) apply it to each block of output while the block is
still in the core's cache, and no second pass runs. The arithmetic is the generated
kernel's, step for step and in the same precision, so the results are the same bits:

    v = conv + bias[o]                  (in the output's dtype)
    v = v + residual                    (the add's other operand, the output's shape)
    v = v if v > 0 else 0               (relu)
    v = low if v < low else (high if v > high else v)   (clip, compared as float64)

Kernels take it as flat arguments (an artifact's entries take arrays and scalars only):
bias, residual, has_bias, has_residual, act, low, high, values (the output dtype's 0, low
and high); `finish` takes them packed as `ep = (bias, has_bias, has_residual, act, low,
high, values)` with the residual value read by the kernel.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numba
import numpy as np
from numba import prange, uint64

from graphcnn.backends.cpu.registry import JIT

NONE, RELU, CLIP = 0, 1, 2


class Epilogue(NamedTuple):
    bias: np.ndarray       # per output channel (one unused value without a bias)
    residual: np.ndarray   # the output's shape (one unused value without a residual)
    has_bias: bool
    has_residual: bool
    act: int               # NONE, RELU or CLIP
    low: float
    high: float
    values: np.ndarray     # [0, low, high] in the output's dtype

    def args(self, residual: np.ndarray | None = None) -> tuple:
        """The flat kernel arguments, with the residual seen as `residual` (the kernel's
        view of it) if given, else flattened (one compiled kernel for both cases)."""
        return (self.bias, self.residual.reshape(-1) if residual is None else residual,
                self.has_bias,
                self.has_residual, self.act, self.low, self.high, self.values)

    def without_bias(self) -> "Epilogue":
        return self._replace(bias=self.values[:1], has_bias=False)

    @property
    def is_identity(self) -> bool:
        return not (self.has_bias or self.has_residual or self.act)


def make(dtype: Any, bias: np.ndarray | None = None, residual: np.ndarray | None = None,
         act: int = NONE, low: float = 0.0, high: float = 0.0) -> Epilogue:
    dtype = np.dtype(dtype)
    values = np.array([0.0, low, high], dtype)
    return Epilogue(values[:1] if bias is None else bias,
                    values[:1] if residual is None else residual,
                    bias is not None, residual is not None, act, float(low), float(high),
                    values)


def chain(steps: list[tuple[str, dict[str, Any], list[int]]]
          ) -> tuple[int | None, int, float, float] | None:
    """A fused group's steps as (the residual's input index or None, act, low, high), or
    None when they are something else than an optional add of another input, then an
    optional relu or clip, on the running value."""
    steps = list(steps)
    residual = None
    if steps and steps[0][0] == "add" and sorted(steps[0][2])[0] == -1 \
            and len(steps[0][2]) == 2 and max(steps[0][2]) >= 0:
        residual, steps = max(steps[0][2]), steps[1:]
    act, low, high = NONE, 0.0, 0.0
    if steps and steps[0][0] == "relu" and list(steps[0][2]) == [-1]:
        act, steps = RELU, steps[1:]
    elif steps and steps[0][0] == "clip" and list(steps[0][2]) == [-1]:
        act, low, high = CLIP, float(steps[0][1]["low"]), float(steps[0][1]["high"])
        steps = steps[1:]
    return None if steps else (residual, act, low, high)


# id(attrs) -> (attrs, kept alive so the id stays theirs; chain(attrs["steps"]))
_CHAINS: dict[int, tuple[dict[str, Any], Any]] = {}


def recognize(attrs: dict[str, Any], ins: list[np.ndarray], out: np.ndarray
              ) -> Epilogue | None:
    """The fused conv2d group's epilogue as an Epilogue (its bias included), or None when
    its chain is something else (see `chain`) or its residual is not an array shaped like
    the output, C-contiguous and apart from it."""
    if attrs["anchor"] != "conv2d" or out.dtype not in (np.float32, np.float64):
        return None
    entry = _CHAINS.get(id(attrs))
    if entry is None or entry[0] is not attrs:
        entry = _CHAINS[id(attrs)] = (attrs, chain(attrs["steps"]))
    if entry[1] is None:
        return None
    ref, act, low, high = entry[1]
    residual = None if ref is None else ins[ref]
    if residual is not None and (
            residual.shape != out.shape or residual.dtype != out.dtype
            or not residual.flags.c_contiguous or np.shares_memory(residual, out)):
        return None
    head = ins[:attrs["anchor_inputs"]]
    return make(out.dtype, head[2] if len(head) == 3 else None, residual, act, low, high)


@numba.njit(inline="always")
def finish(v, o, r, ep):
    """The epilogue at one output value v of channel o, r its residual value."""
    bias, has_bias, has_residual, act, low, high, values = ep
    v1 = v + bias[o] if has_bias else v
    v2 = v1 + r if has_residual else v1
    if act == RELU:
        return v2 if v2 > 0 else values[0]
    if act == CLIP:
        return values[1] if v2 < low else (values[2] if v2 > high else v2)
    return v2


@numba.njit(inline="always")
def finish_row(of, at, count, o, rf, ep):
    """finish over of[at:at + count], all of channel o; rf the flat residual, laid out as
    of."""
    has_residual = ep[2]
    for k in range(count):
        q = uint64(at + k)
        of[q] = finish(of[q], o, rf[q] if has_residual else of[q], ep)


@numba.njit(**JIT)
def apply(out, bias, residual, has_bias, has_residual, act, low, high, values):
    """The epilogue as its own pass over out (N, C, H, W), for kernels that cannot apply it
    as they write (OpenBLAS's GEMMs, the direct convolutions)."""
    ep = (bias, has_bias, has_residual, act, low, high, values)
    c_len, plane = out.shape[1], out.shape[2] * out.shape[3]
    of, rf = out.reshape(out.size), residual.reshape(residual.size)
    for task in prange(out.shape[0] * c_len):
        finish_row(of, task * plane, plane, task % c_len, rf, ep)


@numba.njit(inline="always")
def finish_block(c, res, row0, rows, col0, cols, ep):
    """finish over the 2-d block c[row0:row0 + rows, col0:col0 + cols], rows being output
    channels; res laid out as c."""
    has_residual = ep[2]
    for r in range(rows):
        for q in range(cols):
            v = c[row0 + r, col0 + q]
            c[row0 + r, col0 + q] = finish(v, row0 + r, res[row0 + r, col0 + q]
                                           if has_residual else v, ep)


def active(ep: Any) -> bool:
    """Whether an `ep` tuple changes anything (numba-callable too)."""
    return ep[1] or ep[2] or ep[3] != NONE


active_jit = numba.njit(inline="always")(active)


def image_residual(ep: Epilogue, n: int, rows: int) -> np.ndarray:
    """Image n's residual as a 2-d (rows, -1) array, or a dummy one without a residual."""
    if not ep.has_residual:
        return ep.values[:1].reshape(1, 1)
    return ep.residual[n].reshape(rows, -1)
