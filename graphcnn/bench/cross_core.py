"""How much a cache line costs to move between the cores, measured now: the host's phase.

On the shared 2-core VMs the benchmarks run on, the time of one build of a model changes
by up to 45% from one minute to the next (DenseNet-121 at batch 1: 35 ms, then 50) while
nothing in the process changes. What changes with it is the cost of moving cache lines
from one core to the other: a core that writes over lines the other core has just read
must take them from it first, and that write took 1.8x the time of a write over lines of
its own in the fast phase, 6.4x in the slow one (768 KB: 81 us against 44, then 297; the
model's time jumped at the same second: benchmarks/cross_core.py). The hypervisor places
the two virtual cores near each other (a shared L3) or apart, and moves them.

Every parallel kernel hands data across the cores (each thread reads rows the other wrote
in the kernel before), so the bench measures this before and after its runs and says
which phase its figures come from:

    >>> probe = cross_core_cost(kb=64, repeats=3)
    >>> sorted(probe)                                               # doctest: +SKIP
    ['kb', 'other_us', 'own_us', 'ratio']
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import numba
import numpy as np
from numba import prange

# Above this ratio (a write over the other core's lines / over the writer's own), the
# host is in its slow phase: 1.8 in the fast one, 6.4 in the slow one, when measured.
SLOW_PHASE_RATIO = 3.0


@numba.njit(parallel=True, cache=True, nogil=True)
def _write(a: np.ndarray, parts: int) -> None:
    """Thread t writes part t of `a`."""
    size = a.size // parts
    for t in prange(parts):
        for i in range(t * size, (t + 1) * size):
            a[i] = 1.0


@numba.njit(parallel=True, cache=True, nogil=True, fastmath=True)
def _read(a: np.ndarray, parts: int, shift: int) -> float:
    """Thread t reads part (t + shift) % parts of `a` (shift 1: the part the other
    thread writes)."""
    size = a.size // parts
    sums = np.zeros(parts)
    for t in prange(parts):
        u = (t + shift) % parts
        acc = 0.0
        for i in range(u * size, (u + 1) * size):
            acc += a[i]
        sums[t] = acc
    return sums.sum()


def cross_core_cost(kb: int = 768, repeats: int = 30) -> dict[str, Any] | None:
    """The median time, over `repeats`, of two threads writing `kb` KB (each its half)
    just after each read its own half (`own_us`) or the other's (`other_us`), and their
    ratio. None with fewer than two threads (nothing crosses)."""
    if numba.get_num_threads() < 2:
        return None
    from graphcnn.backends.cpu.blas import one_thread_pool

    a = np.zeros(kb * 1024 // 4, np.float32)
    medians: dict[int, list[float]] = {}
    with one_thread_pool():
        for shift in (0, 1, 0, 1):  # twice each, in turns: a phase change hits both
            times = []
            for _ in range(max(1, repeats // 2)):
                _read(a, 2, shift)
                start = time.perf_counter()
                _write(a, 2)
                times.append(time.perf_counter() - start)
            medians.setdefault(shift, []).extend(times)
    own = statistics.median(medians[0]) * 1e6
    other = statistics.median(medians[1]) * 1e6
    return {"kb": kb, "own_us": own, "other_us": other, "ratio": other / own}


def phase_name(probe: dict[str, Any] | None) -> str:
    """'slow' or 'fast': the host's phase a probe says ('fast' with one thread)."""
    return "slow" if probe is not None and probe["ratio"] > SLOW_PHASE_RATIO else "fast"


def phases_text(ratios: list[float | None]) -> str:
    """Several processes' probe ratios, as '1.8x, 6.3x' ('-' where one thread)."""
    return ", ".join("-" if r is None else f"{r:.1f}x" for r in ratios)


def phase_line(probe: dict[str, Any] | None, when: str) -> str:
    """One line for the bench's header: the probe's figures and the phase they say."""
    if probe is None:
        return f"Cross-core transfers ({when}): one thread, nothing crosses"
    phase = phase_name(probe)
    return (f"Cross-core transfers ({when}): writing {probe['kb']} KB over lines the other "
            f"core read takes {probe['ratio']:.1f}x a write over its own "
            f"({probe['other_us']:.0f} against {probe['own_us']:.0f} us): the host's "
            f"{phase} phase (see docs/bench.md)")


# The other way a shared host takes speed away: time the hypervisor gave our virtual cores
# to someone else ("steal", /proc/stat's eighth column of the cpu line, in ticks).
def cpu_ticks() -> tuple[int, int] | None:
    """(steal, total) ticks of all cores since boot, or None where /proc/stat is absent."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu" or len(fields) < 9:
        return None
    ticks = [int(v) for v in fields[1:]]
    return ticks[7], sum(ticks[:8])


def steal_share(before: tuple[int, int] | None, after: tuple[int, int] | None
                ) -> float | None:
    """The share of the cores' time between two cpu_ticks() the host stole (None: not
    known, or no tick passed)."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def steals_text(shares: list[float | None]) -> str:
    """Several processes' steal shares, as '0%, 12%' ('-' where not known)."""
    return ", ".join("-" if s is None else f"{100 * s:.0f}%" for s in shares)
