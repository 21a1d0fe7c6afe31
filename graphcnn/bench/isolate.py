"""Timing each system in fresh processes of its own (`graphcnn bench --isolate`,
`--processes N`).

In one process, the systems share more than the machine: graphcnn's worker threads spin
for a while after each call, a peer's thread pool too, and the allocator's state and
the threads' placement are one process's luck. With `isolate`, each system's calls run
in a new Python process that builds only that system (the same seeded model and data as
the parent's), times `warmup` + `repeats` calls in one block and reports its median; with
`processes` N > 1, each system gets N such processes, taken in turns (graphcnn's first,
then each peer's, N times), and its figure is the median of the N medians, with their
spread: how far a user who benchmarks once may land from it.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import Any

# the child: graphcnn/bench/model_bench.py isolated_worker (which imports this module)
WORKER = "from graphcnn.bench.model_bench import isolated_worker; isolated_worker()"


def time_isolated(spec: dict[str, Any], systems: list[str], processes: int
                  ) -> dict[str, dict[str, Any]]:
    """Per system: median_ms (the median of its processes' medians), min_ms,
    process_medians_ms, spread (max - min of those, over their median), times_ms (the
    calls of every process), pids (the processes'), cross_core_ratios (the host's
    phase after each process's timing: bench/cross_core.py) and steals (the share of the
    cores' time the host took during each process's timing, None where unknown)."""
    medians: dict[str, list[float]] = {s: [] for s in systems}
    mins: dict[str, list[float]] = {s: [] for s in systems}
    calls: dict[str, list[float]] = {s: [] for s in systems}
    pids: dict[str, list[int]] = {s: [] for s in systems}
    phases: dict[str, list[float | None]] = {s: [] for s in systems}
    steals: dict[str, list[float | None]] = {s: [] for s in systems}
    for _ in range(max(1, processes)):
        for system in systems:
            timing = run_worker(dict(spec, system=system))
            medians[system].append(timing["median_ms"])
            mins[system].append(timing["min_ms"])
            calls[system] += timing["times_ms"]
            pids[system].append(timing["pid"])
            phases[system].append(timing.get("cross_core_ratio"))
            steals[system].append(timing.get("steal"))
    out = {}
    for system in systems:
        values = medians[system]
        middle = statistics.median(values)
        out[system] = {"median_ms": middle, "min_ms": min(mins[system]),
                       "process_medians_ms": [round(v, 4) for v in values],
                       "spread": (max(values) - min(values)) / middle if middle else 0.0,
                       "times_ms": calls[system], "pids": pids[system],
                       "cross_core_ratios": phases[system], "steals": steals[system]}
    return out


def _every_core() -> None:
    """In the child, before it starts: may run on every core this machine lets it have.
    A child inherits its parent's CPU affinity, and with OMP_PROC_BIND set, the OpenMP
    runtime pins the parent's main thread to one core once graphcnn or a peer has run:
    the child would then see one core and refuse two threads."""
    try:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))   # the cpuset still applies
    except (AttributeError, OSError):
        pass   # no affinity on this platform, or none to widen


def run_worker(spec: dict[str, Any], cwd: str | None = None) -> dict[str, Any]:
    """Time one system in a fresh interpreter; its timing (as common.measure's). `cwd`:
    the child's working folder, which `python -c` puts first on its import path (ahead of
    PYTHONPATH): a graphcnn checkout there is the one it imports."""
    done = subprocess.run([sys.executable, "-c", WORKER], input=json.dumps(spec),
                          capture_output=True, text=True, preexec_fn=_every_core, cwd=cwd)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"timing {spec['system']} in its own process failed: {tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result
