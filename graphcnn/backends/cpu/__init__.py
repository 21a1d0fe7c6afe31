"""The Numba CPU backend. `CpuRunner` (and with it Numba) loads on first use, so that
openblas.py, which `import graphcnn` reads, comes without Numba."""
from __future__ import annotations

from typing import Any

__all__ = ["CpuRunner"]


def __getattr__(name: str) -> Any:
    if name == "CpuRunner":
        from graphcnn.backends.cpu.runner import CpuRunner
        return CpuRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
