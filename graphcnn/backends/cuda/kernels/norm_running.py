"""running_var_update on cuda (graphcnn/ops/norm_running.py): a host call between two
launches, as allreduce is — the two (C,) statistics are copied to the host, blended with
the count read from the input's shape, and the result copied back (a few hundred floats
per batch norm and step); the copies wait for the launches before them."""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.backends.cuda.registry import Launch, cuda_kernel
from graphcnn.ops.norm_running import running_var_update_ref


class HostRunningVar:
    """Replayed like a Launch: the runner calls it at its place among the step's launches."""

    __slots__ = ("running", "var", "x_shape", "target", "attrs", "host")

    def __init__(self, running: Any, var: Any, x_shape: tuple[int, ...], target: Any,
                 attrs: dict[str, Any]) -> None:
        self.running, self.var, self.target = running, var, target
        self.x_shape, self.attrs = x_shape, attrs
        self.host = (np.empty(running.shape, np.dtype(running.dtype)),
                     np.empty(var.shape, np.dtype(var.dtype)))

    def __call__(self) -> None:
        self.running.copy_to_host(self.host[0])
        self.var.copy_to_host(self.host[1])
        shape_only = np.lib.stride_tricks.as_strided(np.zeros((), self.host[0].dtype),
                                                     self.x_shape, (0,) * len(self.x_shape))
        out = running_var_update_ref(self.host[0], self.host[1], shape_only,
                                     self.attrs["momentum"], self.attrs["world_size"])
        self.target.copy_to_device(np.ascontiguousarray(out))


@cuda_kernel("running_var_update")
def running_var_update_plan(ins: list[Any], outs: list[Any],
                            attrs: dict[str, Any]) -> list[Launch]:
    return [HostRunningVar(ins[0], ins[1], tuple(ins[2].shape), outs[0],  # type: ignore[list-item]
                           attrs)]
