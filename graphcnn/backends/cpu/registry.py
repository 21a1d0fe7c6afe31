"""CPU kernels by op name. A kernel writes into preallocated output buffers:

    kernel(inputs: list[np.ndarray], outputs: list[np.ndarray], attrs: dict) -> None

Inputs and outputs are C-contiguous arrays of exactly the types the graph says. A kernel
wraps one or more `numba.njit(parallel=True, cache=True)` functions; those take sizes as
arguments (Numba specializes on dtype and rank only), so each compiles once per dtype.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

KernelFn = Callable[[list[np.ndarray], list[np.ndarray], dict[str, Any]], None]

_KERNELS: dict[str, KernelFn] = {}

# Shared Numba options: parallel loops, an on-disk cache so kernels compile once per machine.
JIT = dict(parallel=True, cache=True, nogil=True)


def cpu_kernel(*ops: str) -> Callable[[KernelFn], KernelFn]:
    def decorate(fn: KernelFn) -> KernelFn:
        for op in ops:
            if op in _KERNELS:
                raise ValueError(f"cpu kernel for {op!r} registered twice")
            _KERNELS[op] = fn
        return fn
    return decorate


def get_kernel(op: str) -> KernelFn:
    _load_all()
    try:
        return _KERNELS[op]
    except KeyError:
        raise NotImplementedError(f"the cpu backend has no kernel for op {op!r}") from None


def all_kernels() -> dict[str, KernelFn]:
    _load_all()
    return dict(_KERNELS)


def _load_all() -> None:
    import graphcnn.backends.cpu.kernels  # noqa: F401
