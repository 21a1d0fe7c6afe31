"""Gradient averaging over flat, reused buckets, with one non-blocking allreduce each.

The gradients of a step are copied into a few flat buffers of about `bucket_bytes` (25 MB
by default, PyTorch DDP's bucket size) -- the parameters in reverse creation order, the
order in which a backward pass produces them, as DDP fills its buckets -- and each bucket's
``Iallreduce`` starts as soon as it is filled, so the copy of the next bucket overlaps the
transfer of the previous one. The loss (float64) travels in its own tiny allreduce,
started first. The sums are scaled by 1/W in place; the averaged gradients returned are
views into the buckets, made once: after the first step nothing is allocated per step.

Why no overlap with the backward pass itself: graphcnn's gradient step is one compiled
executable that returns every gradient at once, so a bucket cannot be sent while later
layers' gradients are still being computed (DDP's hook-based overlap). What overlaps is
packing with transfer; see benchmarks/distributed.py for what that costs.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

BUCKET_BYTES = 25 * 1024 * 1024


class GradientBuckets:
    """The bucket layout of one model's gradients (names, shapes, dtypes fixed at build)."""

    def __init__(self, comm: Any, grads: Mapping[str, np.ndarray],
                 bucket_bytes: int = BUCKET_BYTES) -> None:
        from graphcnn.distributed.mpi import load_mpi

        self.mpi = load_mpi()
        self.comm = comm
        self.scale = 1.0 / comm.Get_size()
        self.names = list(grads)
        # buckets never mix dtypes: one MPI datatype per buffer
        layout: list[tuple[np.dtype, list[str]]] = []
        size = 0
        for name in reversed(self.names):
            g = grads[name]
            nbytes = g.size * g.dtype.itemsize
            if not layout or layout[-1][0] != g.dtype or (size + nbytes > bucket_bytes
                                                          and layout[-1][1]):
                layout.append((g.dtype, []))
                size = 0
            layout[-1][1].append(name)
            size += nbytes
        self.buffers: list[np.ndarray] = []
        self.slots: list[list[tuple[str, np.ndarray]]] = []   # (name, view into its bucket)
        self.views: dict[str, np.ndarray] = {}
        for dtype, names in layout:
            buf = np.zeros(sum(grads[n].size for n in names), dtype)
            offset, slots = 0, []
            for n in names:
                view = buf[offset:offset + grads[n].size].reshape(grads[n].shape)
                slots.append((n, view))
                self.views[n] = view
                offset += grads[n].size
            self.buffers.append(buf)
            self.slots.append(slots)
        self.averaged = {n: self.views[n] for n in self.names}   # in the model's order
        self.loss = np.zeros(1, np.float64)
        self.nbytes = sum(b.nbytes for b in self.buffers)

    def matches(self, grads: Mapping[str, np.ndarray]) -> bool:
        return list(grads) == self.names and all(
            grads[n].shape == self.views[n].shape and grads[n].dtype == self.views[n].dtype
            for n in self.names)

    def average(self, loss: float, grads: Mapping[str, np.ndarray]
                ) -> tuple[float, dict[str, np.ndarray]]:
        """The mean over ranks of the loss and of every gradient (every rank calls this
        with its own; every rank gets the same result)."""
        MPI = self.mpi
        self.loss[0] = loss
        requests = [self.comm.Iallreduce(MPI.IN_PLACE, self.loss, op=MPI.SUM)]
        for buf, slots in zip(self.buffers, self.slots):
            for name, view in slots:
                np.copyto(view, grads[name])
            requests.append(self.comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM))
        MPI.Request.Waitall(requests)
        for buf in self.buffers:
            buf *= buf.dtype.type(self.scale)
        return float(self.loss[0]) * self.scale, self.averaged
