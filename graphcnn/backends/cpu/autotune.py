"""Measured choice between a kernel's algorithms, per shape, cached on disk per machine.

A kernel with several ways to compute one layer (conv2d: im2col + OpenBLAS, Winograd, or
one of the packed-weights GEMMs; kernels/conv.py) calls

    name = autotune.pick("conv2d", key, {"gemm": run_gemm, "winograd": run_winograd}, default)

The first time a key is seen on a machine each candidate runs a few times (it computes the
whole result each time, so the output is right whichever ran last) and the fastest wins;
the choice goes into a JSON file (GRAPHCNN_AUTOTUNE_CACHE, else
~/.cache/graphcnn/autotune.json) under a key naming the CPU, its flags, the thread count,
the BLAS core and a digest of the kernels' sources, so a file copied to another machine is
not trusted there, and a new version of the kernels measures again. The file is
only ever parsed as JSON; a damaged one is ignored with a warning and written afresh.

Before timing, the candidates' errors are measured against a float64 yardstick (also
cached, in the machine's "errors" section): only those within the accuracy contract are
timed (accuracy.py). GRAPHCNN_AUTOTUNE=0 measures nothing: every kernel takes its cost model's `default`
(what the test suite does, so its runs do not depend on timings). While an ahead-of-time
artifact is being recorded every candidate runs once, so the artifact holds the kernels of
whichever one the machine that loads it picks.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import tempfile
import threading
import time
import warnings
from typing import Any, Callable

import numba

VERSION = 1
# Timed runs per candidate, after one untimed (compiling, warming the caches); the
# candidates take turns, so a slow moment of the machine hits them alike.
RUNS = 5

_LOCK = threading.Lock()
# machine key (which names the thread count) -> the choices read for it, or made here
_CHOICES: dict[str, dict[str, str]] = {}
# machine key -> entry -> the candidates' measured errors (accuracy.py), read or made here
_ERRORS: dict[str, dict[str, dict[str, float]]] = {}


def enabled() -> bool:
    return os.environ.get("GRAPHCNN_AUTOTUNE", "1").strip().lower() not in ("0", "false", "no", "")


def cache_path() -> str:
    explicit = os.environ.get("GRAPHCNN_AUTOTUNE_CACHE")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "graphcnn", "autotune.json")


@functools.lru_cache(maxsize=1)
def _cpu_description() -> str:
    model, flags = "", ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name") and not model:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = line.split(":", 1)[1].strip()
    except OSError:
        pass
    model = model or platform.processor() or platform.machine()
    return f"{model} | flags {hashlib.sha256(flags.encode()).hexdigest()[:12]}"


def kernels_digest() -> str:
    """A digest of the cpu backend's sources (aot.kernels_fingerprint, which keys the
    artifacts' precompiled code too): a choice measured against one version of the kernels
    says nothing about another (a kernel made faster would otherwise keep losing to the
    choice its old version lost)."""
    from graphcnn.backends.cpu.aot import kernels_fingerprint
    return kernels_fingerprint()[:12]


def machine_key() -> str:
    """The CPU (name and a digest of its feature flags), the thread count, the BLAS kernel
    set, the kernels' sources and the vector width the kernels are built for: a choice
    measured under one of these says nothing about another."""
    from graphcnn.backends.cpu import blas
    from graphcnn.backends.cpu.vector_width import vector_bits
    return (f"{_cpu_description()} | threads={numba.get_num_threads()} | "
            f"blas={blas.core_name()} | kernels={kernels_digest()} | vectors={vector_bits()}")


def _read_file(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {"version": VERSION, "machines": {}}
    except (OSError, ValueError) as err:
        warnings.warn(f"graphcnn: ignoring the autotune cache {path}: {err}", stacklevel=3)
        return {"version": VERSION, "machines": {}}
    if not isinstance(data, dict) or data.get("version") != VERSION \
            or not isinstance(data.get("machines"), dict):
        warnings.warn(f"graphcnn: ignoring the autotune cache {path}: not a version-{VERSION} "
                      f"graphcnn autotune file", stacklevel=3)
        return {"version": VERSION, "machines": {}}
    return data


def _choices() -> dict[str, str]:
    """This machine's choices, read from the file once per machine key (a thread count
    set with gc.set_num_threads is another key)."""
    machine_id = machine_key()
    if machine_id not in _CHOICES:
        machine = _read_file(cache_path())["machines"].get(machine_id, {})
        choices = machine.get("choices", {}) if isinstance(machine, dict) else {}
        _CHOICES[machine_id] = {k: v["choice"] for k, v in choices.items()
                                if isinstance(v, dict) and isinstance(v.get("choice"), str)}
    return _CHOICES[machine_id]


def _measured_errors() -> dict[str, dict[str, float]]:
    """This machine's measured errors (the file's "errors" section), read once per key."""
    machine_id = machine_key()
    if machine_id not in _ERRORS:
        machine = _read_file(cache_path())["machines"].get(machine_id, {})
        section = machine.get("errors", {}) if isinstance(machine, dict) else {}
        _ERRORS[machine_id] = {
            k: {n: float(e) for n, e in v.items() if isinstance(e, (int, float))}
            for k, v in (section.items() if isinstance(section, dict) else ())
            if isinstance(v, dict)}
    return _ERRORS[machine_id]


def _save(key: str, choice: str, times_ms: dict[str, float]) -> None:
    _store("choices", key, {"choice": choice,
                            "ms": {k: round(v, 4) for k, v in times_ms.items()}})


def _store(section: str, key: str, record: Any) -> None:
    """Add one record to the file: read it again (another process may have added some),
    write a temporary file beside it and rename it over (never a half-written file)."""
    path = cache_path()
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        data = _read_file(path)
        machine = data["machines"].setdefault(machine_key(), {"choices": {}})
        if not isinstance(machine.get(section), dict):
            machine[section] = {}
        machine[section][key] = record
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError as err:  # a read-only home: keep the choice for this process only
        warnings.warn(f"graphcnn: cannot write the autotune cache {path}: {err}", stacklevel=3)


def _measure(candidates: dict[str, Callable[[], None]]) -> dict[str, float]:
    """Each candidate's best time in ms over RUNS turns."""
    for run in candidates.values():
        run()
    best = {name: float("inf") for name in candidates}
    for _ in range(RUNS):
        for name, run in candidates.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: seconds * 1e3 for name, seconds in best.items()}


def pick(kind: str, key: tuple, candidates: dict[str, Callable[[], None]],
         default: str) -> str:
    """The candidate to run for `key` (which must say everything the speed depends on:
    shapes, attributes, dtype). Measures the candidates the first time on this machine."""
    from graphcnn.backends.cpu.registry import recording
    if recording():  # an artifact being built: it must hold every candidate's kernels
        for run in candidates.values():
            run()
    if len(candidates) == 1:
        return next(iter(candidates))
    if not enabled():
        return default
    text = _entry(kind, key, candidates)
    with _LOCK:
        known = _choices().get(text)
    if known in candidates:
        return known
    times = _measure(candidates)
    choice = min(times, key=lambda name: times[name])
    with _LOCK:
        _choices()[text] = choice
        _save(text, choice, times)
    return choice


def errors(kind: str, key: tuple, names: list[str],
           measure: Callable[[], dict[str, float]]) -> dict[str, float]:
    """The candidates' errors for `key` (accuracy.measure, called as `measure()`), measured
    the first time on this machine and kept in the file beside the choices."""
    text = _entry(kind, key, names)
    with _LOCK:
        cached = _measured_errors().get(text)
    if cached is not None and set(cached) >= set(names):
        return cached
    measured = measure()
    with _LOCK:
        _measured_errors()[text] = measured
        _store("errors", text, {k: float(f"{v:.4g}") for k, v in measured.items()})
    return measured


def known(kind: str, key: tuple, names: list[str], default: str) -> str:
    """The choice pick made (or would take from the file) for `key` among the candidates
    `names`, measuring nothing: `default` where none is known or measuring is off."""
    if not enabled():
        return default
    with _LOCK:
        return _choices().get(_entry(kind, key, names), default)


def _entry(kind: str, key: tuple, names: Any) -> str:
    """The file's name for a choice: the kind, the key and the candidates, so a version of
    graphcnn with another algorithm to offer measures again instead of reusing a choice
    made without it."""
    return f"{kind}{key!r}{sorted(names)!r}"


def forget() -> None:
    """Drop the choices read into this process (the next pick reads the file again)."""
    with _LOCK:
        _CHOICES.clear()
        _ERRORS.clear()
