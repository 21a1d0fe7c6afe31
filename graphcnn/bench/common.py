"""What the benchmarks share: timing, the SGEMM roof, the machine, tables, JSON."""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np


def measure(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> dict[str, Any]:
    """Call `fn` `warmup` times untimed, then `repeats` times timed; the median and the
    individual times, in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_ms": statistics.median(times) * 1e3,
            "min_ms": min(times) * 1e3,
            "times_ms": [round(t * 1e3, 4) for t in times]}


def measure_interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1,
                        rounds: int = 4, gap_s: float = 0.2) -> dict[str, dict[str, Any]]:
    """Time several contenders in `rounds` rounds: each round gives each contender, in
    order, a block of consecutive timed calls (repeats / rounds of them, after one untimed
    call), so that a drift in the machine's speed during the run (others' load, clocks)
    hits all alike, while each block still runs hot, as a user's loop does. Between blocks
    the process sleeps `gap_s`: the thread pools that spin after a call (ONNX Runtime's,
    OpenMP's, the BLAS's) go idle before the next contender starts, and do not steal its
    cores. `warmup` untimed calls of each first. Per contender: as `measure`."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    repeats = max(1, repeats)
    rounds = max(1, min(rounds, repeats))
    sizes = [repeats // rounds + (1 if r < repeats % rounds else 0) for r in range(rounds)]
    times: dict[str, list[float]] = {k: [] for k in fns}
    for size in sizes:
        for key, fn in fns.items():
            if len(fns) > 1 and gap_s:
                time.sleep(gap_s)
                fn()
            for _ in range(size):
                start = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - start)
    return {k: {"median_ms": statistics.median(t) * 1e3, "min_ms": min(t) * 1e3,
                "times_ms": [round(x * 1e3, 4) for x in t]} for k, t in times.items()}


def sgemm_roof(n: int = 2048, repeats: int = 10) -> dict[str, Any]:
    """The measured SGEMM roof: numpy's float32 n x n matmul (the BLAS numpy links), in
    GFLOP/s (2 n^3 FLOPs per product), median over `repeats`."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    timing = measure(lambda: np.matmul(a, b, out=out), repeats, warmup=2)
    flops = 2.0 * n ** 3
    return {"n": n, "median_ms": timing["median_ms"],
            "gflops": flops / (timing["median_ms"] * 1e-3) / 1e9,
            "best_gflops": flops / (timing["min_ms"] * 1e-3) / 1e9}


def gflops(flops: float, ms: float | None) -> float | None:
    if not ms or not flops:
        return None
    return flops / (ms * 1e-3) / 1e9


def threads() -> int:
    """The thread count graphcnn's kernels use now (Numba's)."""
    import numba
    return int(numba.get_num_threads())


def machine() -> dict[str, Any]:
    """The CPU model, core counts, thread settings, library versions and the commit."""
    cpu = ""
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not cpu:
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = [f for f in line.split(":", 1)[1].split()
                         if f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512vl")]
    except OSError:
        pass
    cpu = cpu or platform.processor() or "unknown"
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    import numba

    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    info: dict[str, Any] = {
        "cpu": cpu, "cpu_flags": flags, "cpu_count": os.cpu_count(), "usable_cores": usable,
        "numba_threads": numba.get_num_threads(), "python": platform.python_version(),
        "numpy": np.__version__, "numba": numba.__version__,
        "blas_env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                "NUMBA_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT",
                                                "GOMP_SPINCOUNT") if k in os.environ},
        "load_average_before": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty_files_in_graphcnn": len(git("status", "--porcelain", "graphcnn").splitlines()),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    }
    for name in ("torch", "onnxruntime"):
        try:
            info[name] = __import__(name).__version__
        except Exception:  # not installed: the peer is skipped
            pass
    return info


def machine_line(m: dict[str, Any]) -> str:
    libs = ", ".join(f"{k} {m[k]}" for k in ("numpy", "numba", "torch", "onnxruntime") if k in m)
    flags = "/".join(m.get("cpu_flags", []))
    return (f"{m['cpu']} ({flags}), {m['usable_cores']} usable cores of {m['cpu_count']}, "
            f"{m['numba_threads']} threads; Python {m['python']}, {libs}; commit {m['commit']}"
            + (f" (+{m['dirty_files_in_graphcnn']} uncommitted files in graphcnn/)"
               if m.get("dirty_files_in_graphcnn") else "")
            + f"; load before {tuple(round(x, 2) for x in m['load_average_before'] or ())}"
            + f"; {m['date']}")


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]],
               markdown: bool = False) -> str:
    """Columns aligned for a terminal, or a Markdown table."""
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    out = []
    for k, row in enumerate([header, *rows]):
        out.append("  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                             for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def fmt(value: float | None, spec: str = ".2f", missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def write_json(path: str | Path, data: Any) -> Path:
    path = Path(path)
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    return path


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (tuple, set)):
        return list(value)
    return str(value)
