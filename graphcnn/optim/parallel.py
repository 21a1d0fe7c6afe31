"""An optimizer step's updates spread over the cores.

Each parameter's update is independent of the others' and reads and writes only its own
arrays, so a step splits its parameters into groups of about equal bytes and updates one
group on the calling thread and each other one on a worker thread: the SGD kernel releases
the GIL (sgd_kernel.py), and so do NumPy's in-place operations on large arrays. Right after
a training step a parameter's arrays have left the caches and each core pulls its own
stream from memory: ResNet-18's SGD step right after a value_and_grad call at batch 16 took
33-45 ms on one thread, and 7-10 on two with no work arrays kept (optimizers.py; a 2-core
machine). Steps under
PARALLEL_BYTES run on the calling thread alone (LeNet-5's whole step is 4 ms, and a
thread's hand-off would cost more than it saves). Any split gives the same bits: each
update is the same arithmetic on the same arrays.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Sequence

PARALLEL_BYTES = 4 << 20   # the step's bytes (parameters) from which it is split

_POOL: ThreadPoolExecutor | None = None
_POOL_PID = 0   # the process that made _POOL: a forked child has none of its threads
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL, _POOL_PID
    with _POOL_LOCK:
        if _POOL is None or _POOL_PID != os.getpid():
            _POOL = ThreadPoolExecutor(max(1, (os.cpu_count() or 1) - 1),
                                       thread_name_prefix="graphcnn-optim")
            _POOL_PID = os.getpid()
        return _POOL


def balanced_groups(sizes: Sequence[int], groups: int) -> list[list[int]]:
    """The indices of `sizes` in `groups` groups of about equal sums (largest first, each
    to the lightest group so far); empty groups left out."""
    loads = [0] * groups
    out: list[list[int]] = [[] for _ in range(groups)]
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        lightest = loads.index(min(loads))
        out[lightest].append(i)
        loads[lightest] += sizes[i]
    return [group for group in out if group]


def run_updates(updates: Sequence[Callable[[], None]], sizes: Sequence[int], threads: int
                ) -> None:
    """Call every update once: on the calling thread alone when the step is small or
    threads is 1, else in `threads` groups at once (balanced_groups of their `sizes` in
    bytes). Waits for all of them before it returns or raises (the first error)."""
    if threads <= 1 or len(updates) < 2 or sum(sizes) < PARALLEL_BYTES:
        for update in updates:
            update()
        return
    own, *others = balanced_groups(sizes, min(threads, (os.cpu_count() or 1)))

    def run(group: list[int]) -> None:
        for i in group:
            updates[i]()

    futures: list[Future[None]] = [_pool().submit(run, group) for group in others]
    try:
        run(own)
    finally:
        errors = [f.exception() for f in futures]   # waits for each
    for error in errors:
        if error is not None:
            raise error
