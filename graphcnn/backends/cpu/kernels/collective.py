"""The allreduce op on cpu: a host call between two kernels (graphcnn/ops/collective.py),
in the thread that runs the step."""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.backends.cpu.registry import cpu_kernel
from graphcnn.ops.collective import allreduce_mean


@cpu_kernel("allreduce")
def allreduce_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                     attrs: dict[str, Any]) -> None:
    outs[0][...] = allreduce_mean(ins[0], attrs["world_size"])
