"""The numba.cuda backend: the same optimized, fused graphs as the cpu backend, on an
NVIDIA GPU. Nothing here is imported by `import graphcnn`; numba.cuda is imported when a
cuda runner is first built (see device.py for the no-GPU error and the simulator)."""
from __future__ import annotations

from typing import Any

__all__ = ["CudaRunner", "CudaUnavailableError", "DeviceMemoryError"]


def __getattr__(name: str) -> Any:
    if name == "CudaRunner":
        from graphcnn.backends.cuda.runner import CudaRunner
        return CudaRunner
    if name in ("CudaUnavailableError", "DeviceMemoryError"):
        from graphcnn.backends.cuda import device
        return getattr(device, name)
    raise AttributeError(name)
