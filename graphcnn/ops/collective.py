"""The `allreduce` op, and the hook through which it talks to other processes: it averages
a small array over the ranks of data-parallel training, between two kernels of a step
(synchronized batch norm, graphcnn/mode_rules.py).

Kernels are Numba or CUDA code and MPI is Python (mpi4py), so the op's kernel on every
backend is a plain Python call, made in the thread that runs the step: it hands its
input, on the host, to the function installed for that thread by `using`, and writes
back what it returns. Who calls a step supplies the function (the Trainer: its
parallel's ``allreduce_mean``; GradientStep: its ``allreduce`` attribute), so the graph
holds no communicator and an artifact holds no code.

With no function installed, a graph built for one rank (``world_size=1``) averages over
itself (the identity); one built for more ranks refuses to run, rather than silently
normalizing with one rank's statistics.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np

from graphcnn.errors import ShapeError
from graphcnn.ir.types import TensorType
from graphcnn.ops.registry import Attr, FusionKind, expect_float, register_op

# array -> the mean of that array over the ranks (the same on every rank)
AllreduceFn = Callable[[np.ndarray], np.ndarray]


class _Current(threading.local):
    fn: AllreduceFn | None = None
    local: bool = False


_CURRENT = _Current()


@contextmanager
def using(fn: AllreduceFn | None) -> Iterator[None]:
    """Within the block, in this thread, `allreduce` nodes average with `fn` (None: no
    function, as outside any block)."""
    previous = (_CURRENT.fn, _CURRENT.local)
    _CURRENT.fn, _CURRENT.local = fn, False
    try:
        yield
    finally:
        _CURRENT.fn, _CURRENT.local = previous


@contextmanager
def local() -> Iterator[None]:
    """Within the block, in this thread, `allreduce` nodes are the identity, whatever the
    world size their graph was built for (a warm-up run on zeros, which every rank makes
    on its own)."""
    previous = (_CURRENT.fn, _CURRENT.local)
    _CURRENT.fn, _CURRENT.local = None, True
    try:
        yield
    finally:
        _CURRENT.fn, _CURRENT.local = previous


def allreduce_mean(array: np.ndarray, world_size: int) -> np.ndarray:
    """The mean of `array` over the ranks, with the function `using` installed; the
    array itself in a world of one or inside `local`."""
    fn = _CURRENT.fn
    if fn is None:
        if world_size == 1 or _CURRENT.local:
            return array
        raise RuntimeError(
            f"allreduce: this step averages batch-norm statistics over {world_size} ranks "
            f"and no communicator was given; train it with gc.Trainer(..., "
            f"distributed=True, sync_batchnorm=True) under mpiexec, or set the step's "
            f"allreduce attribute")
    out = np.asarray(fn(array))
    if out.shape != array.shape:
        raise RuntimeError(f"allreduce: the communicator returned shape {out.shape} for "
                           f"an array of shape {array.shape}")
    return out


# ---- the op ---------------------------------------------------------------------------

def _world_size(value: Any) -> int:
    size = int(value)
    if size < 1:
        raise ShapeError(f"allreduce: world_size must be >= 1, got {size}")
    return size


def allreduce_shape(in_types: list[TensorType], attrs: dict[str, Any]) -> TensorType:
    expect_float(in_types[0], "allreduce input")
    return in_types[0]


def allreduce_ref(x: np.ndarray, world_size: int) -> np.ndarray:
    # a copy: the caller owns what it returns, and the input stays this rank's own
    return np.array(allreduce_mean(np.ascontiguousarray(x), world_size), dtype=x.dtype)


def allreduce_vjp(graph: Any, node: Any, cot: list[Any]) -> list[Any]:
    # y = (1/W) sum_r x_r on every rank, so d(sum_r L_r)/dx_r = (1/W) sum_r dy_r: the
    # mean over ranks of the cotangents, the op itself
    return [graph.add("allreduce", [cot[0]], world_size=node.attrs["world_size"])]


register_op("allreduce", inputs=("x",), shape=allreduce_shape, ref=allreduce_ref,
            vjp=allreduce_vjp, kind=FusionKind.OPAQUE,
            attrs={"world_size": Attr(convert=_world_size)},
            doc="The mean of x over the world_size ranks of data-parallel training (the "
                "same array on every rank), by the function the caller installs "
                "(graphcnn.ops.collective.using); the identity in a world of one. OPAQUE: "
                "nothing fuses across it, and every backend runs it as a host call.")
