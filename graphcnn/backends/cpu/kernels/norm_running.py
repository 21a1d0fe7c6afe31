"""running_var_update on cpu (graphcnn/ops/norm_running.py): a few hundred floats per batch
norm and step, so the reference rule itself, written into the output; the count comes from
the input's shape at the call."""
from __future__ import annotations

from typing import Any

import numpy as np

from graphcnn.backends.cpu.registry import cpu_kernel
from graphcnn.ops.norm_running import running_var_update_ref


@cpu_kernel("running_var_update")
def running_var_update_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                              attrs: dict[str, Any]) -> None:
    outs[0][...] = running_var_update_ref(ins[0], ins[1], ins[2], attrs["momentum"],
                                          attrs["world_size"])
