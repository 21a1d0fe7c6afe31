"""What a cpu artifact holds besides the graph (graphcnn/runtime/artifact/): the machine
its code was compiled for, and the precompiled entries of every kernel launch its
executable makes (graphcnn/backends/cpu/aot.py builds and loads them)."""
from __future__ import annotations

import functools
from typing import Any, Callable

from graphcnn.backends.cpu import aot
from graphcnn.backends.cpu.registry import launch_mode


def target_record() -> dict[str, str]:
    """The manifest's `target`: this machine's triple, CPU name and features, and the
    fingerprint of the cpu kernels' sources."""
    return {**aot.host_target(), "kernels_fingerprint": aot.kernels_fingerprint()}


def target_mismatch(target: dict[str, Any], made_by: dict[str, Any]) -> list[str]:
    """Why code compiled for `target` by the versions in `made_by` (the manifest's
    created_by) cannot run here; empty: it can."""
    import llvmlite
    import numba

    host = aot.host_target()
    reasons = []
    if target.get("triple") != host["triple"]:
        reasons.append(f"compiled for {target.get('triple')}, this is {host['triple']}")
    if target.get("cpu_name") != host["cpu_name"]:
        reasons.append(f"compiled for CPU {target.get('cpu_name')!r}, this CPU is "
                       f"{host['cpu_name']!r}")
    theirs = set(str(target.get("cpu_features", "")).split(","))
    ours = set(host["cpu_features"].split(","))
    if theirs != ours:
        lacking = sorted(f[1:] for f in theirs - ours if f.startswith("+"))
        extra = sorted(f[1:] for f in ours - theirs if f.startswith("+"))
        text = "CPU features differ"
        if lacking:
            text += f" (this CPU lacks {', '.join(lacking[:6])})"
        if extra:
            text += f" (this CPU adds {', '.join(extra[:6])})"
        reasons.append(text)
    for name, version in (("numba", numba.__version__), ("llvmlite", llvmlite.__version__)):
        if made_by.get(name) != version:
            reasons.append(f"made with {name} {made_by.get(name)}, this is {name} {version}")
    if target.get("kernels_fingerprint") != aot.kernels_fingerprint():
        reasons.append("the cpu kernels' sources changed since it was compiled")
    return reasons


def record_entries(run: Callable[[], Any], what: str) -> list[aot.BuiltEntry]:
    """The precompiled entries of every kernel launch `run()` makes (one run, recorded),
    each compiled to object code now (seconds). `what` names the thing saved in errors."""
    recorder = aot.Recorder()
    with launch_mode(recorder=recorder):
        run()
    entries = []
    for (_, signature), (fn, readonly) in recorder.launches.items():
        try:
            entries.append(_built_entry(fn, signature, readonly))
        except aot.AotError as err:
            raise ValueError(f"cannot save {what}: {err}") from None
    return entries


# A kernel's object code depends on the function and its signature only, and models share
# most of their kernels: a process that saves several artifacts (a training run's
# checkpoints, a model at several batch sizes) emits each once. The entries are immutable;
# the bound keeps the object code held to a few hundred kernels'.
@functools.lru_cache(maxsize=256)
def _built_entry(fn: Any, signature: tuple[str, ...], readonly: tuple[bool, ...]
                 ) -> aot.BuiltEntry:
    return aot.build_entry(fn, signature, readonly)
