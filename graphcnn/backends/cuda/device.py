"""The CUDA target, found lazily: importing graphcnn never imports numba.cuda.

`cuda()` returns the `numba.cuda` module (NVIDIA's numba-cuda package when it is installed,
which takes over the `numba.cuda` name; otherwise the target built into Numba) once a GPU
is usable, or raises CudaUnavailableError saying why and how to use the simulator
(NUMBA_ENABLE_CUDASIM=1, which must be set before numba.cuda is first imported).
"""
from __future__ import annotations

from typing import Any

SIMULATOR_HINT = ("To run the cuda backend without a GPU, on NumPy (slowly), set the "
                  "environment variable NUMBA_ENABLE_CUDASIM=1 before Python starts.")


class CudaUnavailableError(RuntimeError):
    """backend='cuda' was asked for, but no CUDA GPU or driver can be used."""


class DeviceMemoryError(MemoryError):
    """A compiled graph needs more device memory than the GPU has free."""


def numba_cuda() -> Any:
    """numba.cuda itself, unchecked: kernels are defined (and compiled lazily, or to PTX)
    with it; running them goes through `cuda()`, which checks for a device."""
    return _import_numba_cuda()


def _import_numba_cuda() -> Any:
    try:
        from numba import cuda
    except ImportError as err:  # a future Numba without the built-in target
        raise CudaUnavailableError(
            f"backend='cuda' needs numba.cuda, which cannot be imported ({err}); install "
            f"the CUDA extra: pip install 'graphcnn[cuda]' (NVIDIA's numba-cuda). "
            f"{SIMULATOR_HINT}") from None
    return cuda


def is_simulator() -> bool:
    """Whether numba.cuda runs on the simulator (decided when it was first imported)."""
    from numba.core import config
    return bool(getattr(config, "ENABLE_CUDASIM", 0))  # set by numba.core.config at import


_CHECKED = False


def cuda() -> Any:
    """The numba.cuda module, checked to have a usable device (or the simulator)."""
    global _CHECKED
    module = _import_numba_cuda()
    if _CHECKED:
        return module
    if not is_simulator():
        try:
            available = module.is_available()
        except Exception as err:  # driver errors surface here on some set-ups
            available, reason = False, str(err)
        else:
            reason = "" if available else _why_unavailable(module)
        if not available:
            raise CudaUnavailableError(
                f"backend='cuda' needs an NVIDIA GPU with a working CUDA driver, and none "
                f"is usable here{': ' + reason if reason else ''}. {SIMULATOR_HINT} Or use "
                f"backend='cpu'.")
    _CHECKED = True
    return module


def _why_unavailable(module: Any) -> str:
    try:
        module.current_context()
    except Exception as err:
        text = " ".join(str(err).split())
        return text[:300]
    return "numba.cuda.is_available() is False"


def implementation() -> str:
    """'NVIDIA' (the numba-cuda package) or 'Built-in' (Numba's deprecated target)."""
    return getattr(_import_numba_cuda(), "implementation", "Built-in")


def check_device_memory(nbytes: int, what: str) -> None:
    """Raise DeviceMemoryError (with the bytes needed) when `nbytes` do not fit in the free
    device memory. The simulator has no device memory to check."""
    if is_simulator():
        return
    free, total = cuda().current_context().get_memory_info()
    if nbytes > free:
        raise DeviceMemoryError(
            f"{what} needs {nbytes:,} bytes ({nbytes / 2**20:.1f} MiB) of GPU memory, but "
            f"only {free:,} of {total:,} bytes are free; use a smaller batch size or a "
            f"smaller model")


def multiprocessors() -> int:
    """Streaming multiprocessors of the current device (a small stand-in on the simulator)."""
    if is_simulator():
        return 2
    device = cuda().get_current_device()
    return int(device.MULTIPROCESSOR_COUNT)
