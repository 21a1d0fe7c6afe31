"""What the Trainer does differently on several ranks, behind one small interface.

`Local` (one process, no MPI) and `MPIParallel` (COMM_WORLD) answer the same calls:
the rank's shard of an epoch, the averaged loss and gradients of a step, sums of counts,
the mean of synchronized batch norm's statistics inside a step,
this rank's block of rows to predict and the gathering of every rank's rows, the
broadcast of the trainer's whole state from rank 0, and of the batch-norm buffers.
The Trainer calls them unconditionally; `Local`'s are identities, so a single-process
run is exactly what it was before distributed training existed.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np

from graphcnn.distributed.sampler import shard_indices


class Local:
    """A world of one process."""

    rank, world_size, is_main = 0, 1, True

    def batch_size(self, batch_size: int, n: int) -> int:
        return min(batch_size, n)

    def shard(self, order: np.ndarray) -> np.ndarray:
        return order

    def average(self, loss: float, grads: Mapping[str, np.ndarray]) -> tuple[float, Any]:
        return loss, grads

    def sum(self, values: np.ndarray) -> np.ndarray:
        return values

    def allreduce_mean(self, array: np.ndarray) -> np.ndarray:
        """The mean over the ranks of `array` (synchronized batch norm's statistics,
        called inside a step: graphcnn/ops/collective.py)."""
        return array

    def rows(self, n: int) -> tuple[int, int]:
        return 0, n

    def gather(self, parts: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        return parts

    def sync_state(self, trainer: Any, epoch: int, resumed: bool) -> tuple[int, bool]:
        return epoch, resumed

    def broadcast_buffers(self, model: Any) -> None:
        pass


class MPIParallel(Local):
    """Data parallelism over MPI_COMM_WORLD (graphcnn/distributed/__init__.py)."""

    def __init__(self) -> None:
        from graphcnn.distributed.faults import install_abort_handler
        from graphcnn.distributed.mpi import load_mpi

        self.mpi = load_mpi()
        self.comm = self.mpi.COMM_WORLD
        self.rank, self.world_size = self.comm.Get_rank(), self.comm.Get_size()
        self.is_main = self.rank == 0
        self.buckets: Any = None
        install_abort_handler()
        split_threads(self.comm, self.mpi)

    def batch_size(self, batch_size: int, n: int) -> int:
        if n < self.world_size:
            raise ValueError(f"fit: {n} samples cannot be shared among {self.world_size} "
                             f"ranks (each needs at least one)")
        return min(batch_size, n // self.world_size)

    def shard(self, order: np.ndarray) -> np.ndarray:
        return shard_indices(order, self.rank, self.world_size)

    def average(self, loss: float, grads: Mapping[str, np.ndarray]) -> tuple[float, Any]:
        from graphcnn.distributed.buckets import GradientBuckets

        if self.world_size == 1:   # nothing to average: no copies into buckets
            return loss, grads
        if self.buckets is None or not self.buckets.matches(grads):
            self.buckets = GradientBuckets(self.comm, grads)
        return self.buckets.average(loss, grads)

    def sum(self, values: np.ndarray) -> np.ndarray:
        out = np.ascontiguousarray(values, np.float64).copy()
        self.comm.Allreduce(self.mpi.IN_PLACE, out, op=self.mpi.SUM)
        return out

    def allreduce_mean(self, array: np.ndarray) -> np.ndarray:
        if self.world_size == 1:
            return array
        out = np.array(array, order="C")   # a copy: the step's own buffer stays its own
        self.comm.Allreduce(self.mpi.IN_PLACE, [out, self.mpi._typedict[out.dtype.char]],
                            op=self.mpi.SUM)
        out *= out.dtype.type(1.0 / self.world_size)
        return out

    def _counts(self, n: int) -> list[int]:
        w = self.world_size
        return [n // w + (r < n % w) for r in range(w)]

    def rows(self, n: int) -> tuple[int, int]:
        if n < self.world_size:   # too few rows to share: every rank predicts them all
            return 0, n
        counts = self._counts(n)
        start = sum(counts[:self.rank])
        return start, start + counts[self.rank]

    def gather(self, parts: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        """Every rank's block of rows (rows()), concatenated in rank order on every rank."""
        if n < self.world_size:
            return parts
        counts = self._counts(n)
        out = {}
        for name, local in parts.items():
            local = np.ascontiguousarray(local)
            row = int(np.prod(local.shape[1:], dtype=np.int64))
            full = np.empty((n, *local.shape[1:]), local.dtype)
            sizes = [c * row for c in counts]
            displs = [sum(sizes[:r]) for r in range(len(sizes))]
            kind = self.mpi._typedict[local.dtype.char]
            self.comm.Allgatherv([local, kind], [full, (sizes, displs), kind])
            out[name] = full
        return out

    def _bcast_array(self, array: np.ndarray) -> np.ndarray:
        array = np.ascontiguousarray(array)
        self.comm.Bcast([array, self.mpi._typedict[array.dtype.char]], root=0)
        return array

    def sync_state(self, trainer: Any, epoch: int, resumed: bool) -> tuple[int, bool]:
        """Give every rank rank 0's parameters, optimizer state, schedule, rng, input
        normalization and history (and the epoch to start from), before the first step."""
        from graphcnn.train.checkpoint_state import Restorable
        from graphcnn.train.history import History

        arrays: dict[str, np.ndarray] = {}
        header = b""
        if self.is_main:
            params, opt_arrays, meta = trainer.checkpoint_state(epoch)
            meta["resumed"] = resumed
            meta["resume_changes"] = trainer.resume_changes
            arrays = {"p:" + k: v for k, v in params.items()}
            arrays.update({"o:" + k: v for k, v in opt_arrays.items()})
            table = [[k, v.dtype.str, list(v.shape)] for k, v in arrays.items()]
            header = json.dumps({"meta": meta, "table": table}, default=_plain).encode()
        size = self._bcast_array(np.array([len(header)], np.int64))
        raw = self._bcast_array(np.frombuffer(header, np.uint8).copy() if self.is_main
                                else np.empty(int(size[0]), np.uint8))
        state = json.loads(raw.tobytes().decode())
        received = {k: self._bcast_array(arrays[k] if self.is_main else np.empty(shape, dtype))
                    for k, dtype, shape in state["table"]}
        meta = state["meta"]
        if not self.is_main:
            norm = trainer.normalize
            Restorable(
                epoch=meta["epoch"],
                parameters={k[2:]: v for k, v in received.items() if k.startswith("p:")},
                optimizer_arrays={k[2:]: v for k, v in received.items() if k.startswith("o:")},
                optimizer_scalars=meta["optimizer"]["scalars"],
                schedule_state=None if meta["schedule"] is None else meta["schedule"]["state"],
                rng_state=meta["rng"],
                normalize=None if meta["normalize"] is None or norm is None
                or not hasattr(type(norm), "from_state_dict")
                else type(norm).from_state_dict(meta["normalize"]),
                history=History.from_state_dict(meta["history"])).apply(trainer)
            trainer.resume_changes = [tuple(c) for c in meta["resume_changes"]]
        return int(meta["epoch"]), bool(meta["resumed"])

    def broadcast_buffers(self, model: Any) -> None:
        """Rank 0's non-trainable parameters (batch norm's running statistics) to every
        rank, as DDP's broadcast_buffers: each rank normalizes its batches with their own
        statistics, and evaluation and checkpoints use rank 0's running ones."""
        trainable = model.trainable_parameters()
        for name, value in model.parameters().items():
            if name not in trainable:
                self.comm.Bcast([value, self.mpi._typedict[value.dtype.char]], root=0)


def split_threads(comm: Any, mpi: Any) -> int:
    """Share this machine's cores among the ranks running on it (each rank's kernels use
    cores // local ranks threads), unless NUMBA_NUM_THREADS says otherwise: ranks that
    each start a thread per core oversubscribe the machine and run several times slower.
    Returns the thread count (0 when left alone)."""
    import os

    if os.environ.get("NUMBA_NUM_THREADS") or os.environ.get("GRAPHCNN_RANK_THREADS") == "0":
        return 0
    local = comm.Split_type(mpi.COMM_TYPE_SHARED)
    ranks_here = local.Get_size()
    local.Free()
    if ranks_here <= 1:
        return 0
    import graphcnn as gc

    threads = max(1, (os.cpu_count() or 1) // ranks_here)
    gc.set_num_threads(threads)
    return threads


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"trainer state: {type(value).__name__} cannot be sent between ranks")


def make_parallel(distributed: bool) -> Local:
    """`MPIParallel` when distributed training is asked for (MPIUnavailableError without
    mpi4py), else `Local`."""
    return MPIParallel() if distributed else Local()
