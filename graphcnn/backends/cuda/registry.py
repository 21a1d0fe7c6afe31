"""CUDA kernels by op name. Unlike a cpu kernel, a cuda kernel *plans*: it is called once,
when the runner is built, with the device arrays the node will always read and write
(views into the device arena, which never move), and returns the launches to replay at
every call:

    plan(inputs: list[DeviceNDArray], outputs: list[DeviceNDArray], attrs) -> list[Launch]

so a call costs one kernel launch per Launch and no Python work on shapes. A Launch is a
`numba.cuda` kernel with its grid, block and arguments. Scratch arrays a
plan needs (float64 partial sums, split-K partial products) are allocated by the plan and
kept alive by its launches' arguments.

`device_kernel(example)` marks each `cuda.jit` function with a recipe for example argument
types, so tests/test_cuda_ptx.py can compile every kernel to PTX without a GPU.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from numba import types

from graphcnn.backends.cuda.device import is_simulator, numba_cuda


class Launch:
    """One planned kernel launch: a `cuda.jit` kernel, its grid and block, its arguments.

    numba.cuda's `kernel[grid, block]` makes a fresh launch configuration, which is kept
    and replayed. The simulator's sets the grid and block on the kernel object itself and
    returns it; kernels are shared between plans (codegen.specialized), so there each call
    configures its kernel again, or every launch would run with the last plan's grid."""

    __slots__ = ("kernel", "grid", "block", "args", "_configured")

    def __init__(self, kernel: Any, grid: Any, block: Any, args: tuple) -> None:
        self.kernel, self.grid, self.block, self.args = kernel, grid, block, args
        self._configured = None if is_simulator() else kernel[grid, block]

    def __call__(self) -> None:
        configured = self._configured or self.kernel[self.grid, self.block]
        configured(*self.args)


PlanFn = Callable[[list[Any], list[Any], dict[str, Any]], list[Launch]]

_PLANS: dict[str, PlanFn] = {}


def cuda_kernel(*ops: str) -> Callable[[PlanFn], PlanFn]:
    def decorate(fn: PlanFn) -> PlanFn:
        for op in ops:
            if op in _PLANS:
                raise ValueError(f"cuda kernel for {op!r} registered twice")
            _PLANS[op] = fn
        return fn
    return decorate


def get_kernel(op: str) -> PlanFn:
    _load_all()
    try:
        return _PLANS[op]
    except KeyError:
        raise NotImplementedError(f"the cuda backend has no kernel for op {op!r}") from None


def all_kernels() -> dict[str, PlanFn]:
    _load_all()
    return dict(_PLANS)


def _load_all() -> None:
    import graphcnn.backends.cuda.kernels  # noqa: F401


# ---- PTX examples -------------------------------------------------------------------------
# name -> build(float type) -> (the kernel's Python function, example argument types)
PTX_EXAMPLES: dict[str, Callable[[Any], tuple[Callable[..., Any], tuple]]] = {}


def device_kernel(example: Callable[[Any], tuple], name: str | None = None) -> Callable:
    """`@device_kernel(lambda f: (f[:], f[:], int64))` on a kernel's Python function:
    records it for the PTX test, then returns `cuda.jit(fn)`."""
    def decorate(fn: Callable[..., Any]) -> Any:
        PTX_EXAMPLES[name or f"{fn.__module__}.{fn.__name__}"] = lambda f: (fn, example(f))
        return numba_cuda().jit(fn)
    return decorate


def c_arrays(dtype: Any, *ndims: int) -> tuple:
    """The Numba types of C-contiguous arrays of dtype with these numbers of axes (PTX
    example arguments)."""
    return tuple(types.Array(dtype, ndim, "C") for ndim in ndims)


def device_function(fn: Callable[..., Any]) -> Any:
    return numba_cuda().jit(device=True)(fn)


# ---- launch geometry ------------------------------------------------------------------------
# Threads per block of the 1-D kernels, and the most blocks a grid-stride launch uses.
# The simulator runs every thread as a Python thread: there, small blocks and few of them
# (the grid-stride loops then take several turns, which the tests want to exercise too).
THREADS = 32 if is_simulator() else 256
MAX_BLOCKS = 4 if is_simulator() else 65_535 * 8


def blocks_for(n: int, threads: int = THREADS) -> int:
    return max(1, min((int(n) + threads - 1) // threads, MAX_BLOCKS))


def reduction_blocks(outputs: int) -> int:
    """Blocks for a block-per-output reduction (the blocks loop over the outputs)."""
    return max(1, min(int(outputs), MAX_BLOCKS, 65_535))


def launch_1d(kernel: Any, n: int, *args: Any, threads: int = THREADS) -> Launch:
    """A grid-stride launch over n elements."""
    return Launch(kernel, blocks_for(n, threads), threads, args)


def flat(a: Any) -> Any:
    """A C-contiguous device array viewed as 1-D (0-d arrays are kept as (1,) already)."""
    return a.reshape(a.size) if a.ndim != 1 else a


_DUMMIES: dict[tuple, Any] = {}


def dummy(dtype: Any, shape: tuple[int, ...] = (1,)) -> Any:
    """A small zero device array standing in for an absent optional input."""
    key = (np.dtype(dtype).str, shape)
    if key not in _DUMMIES:
        _DUMMIES[key] = numba_cuda().to_device(np.zeros(shape, dtype))
    return _DUMMIES[key]


def scratch(n: int, dtype: Any = np.float64) -> Any:
    return numba_cuda().device_array(max(int(n), 1), dtype)


# ---- min / max on the device ---------------------------------------------------------------
# Python's two-argument min/max (the first argument wins ties and NaN comparisons). Kernels
# and generated epilogues use these rather than the builtins, which Numba's built-in CUDA
# target (0.68) fails to compile ("Signature mismatch" in its star-args overload).
@device_function
def dmax(a, b):
    return b if b > a else a


@device_function
def dmin(a, b):
    return b if b < a else a


@device_function
def nan_max(a, b):
    """max(a, b) for floats with NaN winning (as NumPy's and PyTorch's max): a running
    maximum that started at a NaN stays NaN, and a NaN met later takes over."""
    return b if (b > a) or (b != b) else a


# ---- flat indices ---------------------------------------------------------------------------
@device_function
def nchw(i, C, H, W):
    """(n, c, y, x) of flat index i into a C-contiguous (N, C, H, W) tensor: how the
    grid-stride loops of the per-element kernels find the element they own."""
    x = i % W
    t = i // W
    y = t % H
    t //= H
    c = t % C
    return t // C, c, y, x
