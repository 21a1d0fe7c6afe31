"""The allreduce op on cuda: a host call between two launches (graphcnn/ops/collective.py).
Its input (a per-channel statistic: a few hundred floats) is copied to the host, averaged
over the ranks by the installed function, and copied back into its output; the copies
wait for the launches before them on the default stream."""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.backends.cuda.registry import Launch, cuda_kernel
from graphcnn.ops.collective import allreduce_mean


class HostAllreduce:
    """Replayed like a Launch: the runner calls it at its place among the step's launches."""

    __slots__ = ("source", "target", "world_size", "host")

    def __init__(self, source: Any, target: Any, world_size: int) -> None:
        self.source, self.target, self.world_size = source, target, world_size
        self.host = np.empty(source.shape, np.dtype(source.dtype))

    def __call__(self) -> None:
        self.source.copy_to_host(self.host)
        out = np.ascontiguousarray(allreduce_mean(self.host, self.world_size), self.host.dtype)
        self.target.copy_to_device(out)


@cuda_kernel("allreduce")
def allreduce_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    return [HostAllreduce(ins[0], outs[0], attrs["world_size"])]  # type: ignore[list-item]
