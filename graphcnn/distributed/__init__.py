"""Data-parallel training over MPI (mpi4py): one process per rank, gradients averaged.

    mpiexec -n 2 graphcnn train lenet5 --distributed
    gc.Trainer(model, ..., distributed=True).fit(X, y, ...)     # run under mpiexec

The same script runs under plain ``python`` as world size 1. The semantics (PyTorch
DDP's): parameters and optimizer state broadcast from rank 0 before the first step;
each epoch's permutation, drawn from the shared seed, split into disjoint strided shards
(graphcnn/distributed/sampler.py); gradients averaged by allreduce over flat reused
buckets (graphcnn/distributed/buckets.py); ``batch_size`` is per rank; batch norm uses each
rank's statistics, or with ``sync_batchnorm=True`` (``--sync-batchnorm``) the global
batch's, averaged inside each step by `allreduce` nodes (graphcnn/ops/collective.py).
docs/distributed.md is the guide.

``import graphcnn`` never imports mpi4py: these functions import it on first use, and
say what to install when it is missing (``pip install -e ".[distributed]"``).
"""
from __future__ import annotations

from graphcnn.distributed.faults import abort, install_abort_handler
from graphcnn.distributed.mpi import INSTALL_HINT, MPIUnavailableError, available, launched_size
from graphcnn.distributed.sampler import shard_indices

__all__ = ["rank", "world_size", "is_main", "barrier", "abort", "install_abort_handler",
           "available", "shard_indices", "MPIUnavailableError", "INSTALL_HINT"]


def _comm() -> object | None:
    """COMM_WORLD, or None for a process no launcher started and without mpi4py."""
    from graphcnn.distributed.mpi import load_mpi

    if not available() and launched_size() == 1:
        return None   # plain `python` without the extra: a world of one
    return load_mpi("graphcnn.distributed").COMM_WORLD


def rank() -> int:
    """This process's rank in MPI_COMM_WORLD (0 in a plain ``python`` run)."""
    comm = _comm()
    return 0 if comm is None else int(comm.Get_rank())  # type: ignore[attr-defined]


def world_size() -> int:
    """The number of ranks (1 in a plain ``python`` run)."""
    comm = _comm()
    return 1 if comm is None else int(comm.Get_size())  # type: ignore[attr-defined]


def is_main() -> bool:
    """True on rank 0: the rank that prints, logs and writes checkpoints."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank reaches this call (nothing to wait for in a world of one)."""
    comm = _comm()
    if comm is not None:
        comm.Barrier()  # type: ignore[attr-defined]
