"""CPU kernels by op name. A kernel writes into preallocated output buffers:

    kernel(inputs: list[np.ndarray], outputs: list[np.ndarray], attrs: dict) -> None

Inputs and outputs are C-contiguous arrays of exactly the types the graph says. A kernel
wraps one or more `numba.njit(parallel=True, cache=True)` functions; those take sizes as
arguments (Numba specializes on dtype and rank only), so each compiles once per dtype.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np

from graphcnn.backends.cpu.threads import prefer_threadsafe_layer

# Before any kernel is compiled or run (every kernel module imports this one): a threading
# layer that lets several threads run graphs at once (see threads.py).
prefer_threadsafe_layer()

KernelFn = Callable[[list[np.ndarray], list[np.ndarray], dict[str, Any]], None]

_KERNELS: dict[str, KernelFn] = {}

# Shared Numba options: parallel loops, an on-disk cache so kernels compile once per machine,
# and IEEE division (x / 0 is inf or nan, as in NumPy): Python's error model tests every
# float division for zero to raise, which stops LLVM vectorizing any loop that divides.
JIT: dict[str, Any] = dict(parallel=True, cache=True, nogil=True, error_model="numpy")
# The same for the serial per-task functions the parallel loops call.
TASK_JIT: dict[str, Any] = dict(cache=True, nogil=True, error_model="numpy")
# Reductions may reorder their (float64) sums, so LLVM can split them into vector lanes
# (a serial sum is one dependent add per element: 4 cycles each); the results differ from
# the serial order by rounding only.
REDUCE_JIT: dict[str, Any] = dict(JIT, fastmath={"reassoc"})


# ---- launching compiled functions -----------------------------------------------------
# Kernel wrappers call their Numba functions as `launch(fn, *args)`, never `fn(*args)`, so
# one wrapper serves three modes: plain (Numba's dispatcher: compile or load from cache),
# recording (which functions and argument types a run uses: what an ahead-of-time artifact
# must contain) and precompiled (machine code loaded from an artifact, no compiler). See
# graphcnn/backends/cpu/aot.py.

class _LaunchState(threading.local):
    table: Any = None      # precompiled entries (aot.EntryTable), or None
    recorder: Any = None   # aot.Recorder, or None


_STATE = _LaunchState()


def launch(fn: Callable[..., Any], *args: Any) -> Any:
    """Call the Numba function `fn` with `args`, as the current launch mode says."""
    state = _STATE
    if state.table is None and state.recorder is None:
        return fn(*args)
    from graphcnn.backends.cpu.aot import dispatch
    return dispatch(state.table, state.recorder, fn, args)


def recording() -> bool:
    """Whether launches in this thread are being recorded for an artifact."""
    return _STATE.recorder is not None


_KEEP: Any = object()


@contextmanager
def launch_mode(table: Any = _KEEP, recorder: Any = _KEEP) -> Iterator[None]:
    """Within the block (in this thread), launches use precompiled `table` entries and/or
    are recorded into `recorder` (an argument left out keeps its current setting)."""
    previous = (_STATE.table, _STATE.recorder)
    if table is not _KEEP:
        _STATE.table = table
    if recorder is not _KEEP:
        _STATE.recorder = recorder
    try:
        yield
    finally:
        _STATE.table, _STATE.recorder = previous


def cpu_kernel(*ops: str) -> Callable[[KernelFn], KernelFn]:
    def decorate(fn: KernelFn) -> KernelFn:
        for op in ops:
            if op in _KERNELS:
                raise ValueError(f"cpu kernel for {op!r} registered twice")
            _KERNELS[op] = fn
        return fn
    return decorate


def get_kernel(op: str) -> KernelFn:
    """The registered kernel of `op`. Those of the ops with a strategy (conv2d, linear,
    fused, ...) are registered by graphcnn/backends/cpu/strategy.py when it is imported,
    as the cpu runner does."""
    _load_all()
    try:
        return _KERNELS[op]
    except KeyError:
        raise NotImplementedError(f"the cpu backend has no kernel for op {op!r} (the kernels "
                                  f"of ops with a strategy come with "
                                  f"graphcnn.backends.cpu.strategy)") from None


def all_kernels() -> dict[str, KernelFn]:
    _load_all()
    return dict(_KERNELS)


def _load_all() -> None:
    import graphcnn.backends.cpu.kernels  # noqa: F401
