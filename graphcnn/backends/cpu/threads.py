"""Calls from many Python threads at once: Numba's threading layer and the cores.

An executable releases the GIL while its kernels run, so a web server's thread pool runs
several graphs at once. Two things are process-wide and must allow it:

- Numba's threading layer. `omp` (GNU OpenMP, which the Numba wheels link) and `tbb` let
  any number of threads launch parallel kernels at once; `workqueue`, what Numba falls back
  to when neither loads, aborts the process when two do. `prefer_threadsafe_layer` asks
  Numba for a thread-safe one (unless the user chose a layer), before it starts any; if
  only `workqueue` is there, `call_lock` makes the graphs' calls take turns (with one
  warning, when two first meet, saying how to install a thread-safe layer) rather than
  crash.
- The cores. Each call would run every kernel on all of its thread's Numba threads, so
  two concurrent calls put twice as many busy threads as cores, and OpenMP threads spin
  at their barriers (GOMP_SPINCOUNT, see graphcnn/__init__.py): one descheduled thread
  stalls its whole team. `share` gives each of the calls running now its part of the
  threads instead (Numba's thread count is per Python thread), re-read before every
  kernel, so a call alone gets them all again as soon as the others end. A kernel on
  fewer threads may sum in another order, so such a call's outputs can differ from a lone
  call's in the last bits; GRAPHCNN_SHARE_CORES=0 keeps every call on all its threads
  (outputs bitwise those of a lone call, the cores oversubscribed).
"""
from __future__ import annotations

import importlib
import os
import threading
import warnings
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Callable

SAFE_LAYERS = ("omp", "tbb")
INSTALL_HINT = ("install a thread-safe threading layer for Numba: GNU OpenMP (libgomp, "
                "e.g. `apt install libgomp1`) or Intel TBB (`pip install tbb`), then "
                "restart; or set NUMBA_THREADING_LAYER=omp (or tbb) if one is installed")


def user_chose_layer() -> bool:
    """Whether the user picked Numba's threading layer (environment or numba.config)."""
    from numba.core import config
    return "NUMBA_THREADING_LAYER" in os.environ or \
        str(getattr(config, "THREADING_LAYER", "default")).lower() != "default"


def _loads(name: str) -> bool:
    """Whether Numba's layer `name` (tbb or omp) loads here, as Numba would load it."""
    try:
        if name == "tbb":
            from numba.np.ufunc.parallel import _check_tbb_version_compatible
            _check_tbb_version_compatible()
        importlib.import_module(f"numba.np.ufunc.{name}pool")
        return True
    except (ImportError, ValueError):
        return False


def _safe_layer_loads() -> bool:
    """Whether a thread-safe layer loads here (tried in Numba's priority order, so that
    only the one it will start is loaded)."""
    from numba.core import config
    priority = getattr(config, "THREADING_LAYER_PRIORITY", ["tbb", "omp", "workqueue"])
    return any(_loads(name) for name in priority if name in SAFE_LAYERS)


def prefer_threadsafe_layer() -> None:
    """Ask Numba for a thread-safe threading layer ('threadsafe': tbb or omp, in its
    priority order) when the user has not chosen one, its layer has not started yet and
    one can load; otherwise leave Numba's choice (see `call_lock`)."""
    from numba.np.ufunc import parallel

    if parallel._is_initialized or user_chose_layer() or not _safe_layer_loads():
        return
    from numba.core import config
    config.THREADING_LAYER = "threadsafe"  # type: ignore[attr-defined]  # set at import


class _Layer:
    lock = threading.Lock()      # serializes calls when the layer is not thread-safe
    name: str | None = None      # the layer Numba started, once known
    safe = False                 # whether it is thread-safe
    warned = False
    get_threads: Callable[[], int] | None = None   # Numba's own getter, once started


def layer() -> str:
    """The threading layer Numba runs the kernels on (starting it if it has not started:
    it would start at the first kernel anyway)."""
    if _Layer.name is None:
        import numba
        from numba.np.ufunc import parallel
        parallel._launch_threads()
        # The C getter the layer installs (what numba.get_num_threads calls after checks).
        _Layer.get_threads = getattr(parallel, "_get_num_threads", numba.get_num_threads)
        _Layer.safe = str(numba.threading_layer()) in SAFE_LAYERS
        _Layer.name = str(numba.threading_layer())
    return _Layer.name


def thread_safe() -> bool:
    """Whether calls may run their kernels at once (the layer is omp or tbb)."""
    if _Layer.name is None:
        layer()
    return _Layer.safe


class _Turns:
    """The process-wide lock calls take turns with on a layer that is not thread-safe
    (the layer is the process's): a call that finds it held says so, once per process,
    and waits, instead of aborting the process."""

    def __enter__(self) -> None:
        if not _Layer.lock.acquire(blocking=False):
            if not _Layer.warned:
                _Layer.warned = True
                warnings.warn(f"graphcnn: Numba's threading layer is {layer()!r}, which "
                              f"cannot run two parallel kernels at once, so calls from "
                              f"several threads run one at a time; to run them "
                              f"concurrently, {INSTALL_HINT}", RuntimeWarning, stacklevel=2)
            _Layer.lock.acquire()

    def __exit__(self, *exc: Any) -> None:
        _Layer.lock.release()


def call_lock() -> AbstractContextManager[Any]:
    """What a call holds while its kernels run: nothing on a thread-safe layer; on
    `workqueue`, its turn (see _Turns)."""
    return nullcontext() if thread_safe() else _Turns()


# One entry per call running its kernels now, in every executable of the process: append
# and pop are each atomic (one C call under the GIL; free-threaded builds lock the list),
# and cost less than a lock around a counter, at every call.
RUNNING: list[None] = []
SHARE_CORES = os.environ.get("GRAPHCNN_SHARE_CORES", "1").strip() != "0"


def enter() -> None:
    """A call starts running its kernels."""
    RUNNING.append(None)


def leave() -> None:
    """A call is done with its kernels."""
    RUNNING.pop()


def share(threads: int) -> int:
    """The Numba threads a call whose thread may use `threads` takes now: its part of
    them among the calls running (at least one), or all of them with
    GRAPHCNN_SHARE_CORES=0."""
    if not SHARE_CORES:
        return threads
    return max(1, threads // max(1, len(RUNNING)))


def running() -> int:
    """How many calls are running their kernels now."""
    return len(RUNNING)


def thread_count() -> int:
    """numba.get_num_threads() (this Python thread's setting), without its checks once the
    layer has started: a call reads it each time (0.1 us instead of 2)."""
    if _Layer.get_threads is None:
        layer()
    get: Any = _Layer.get_threads
    return int(get())
