"""Ahead-of-time artifacts: ResNet-18 (224x224, batch 1), cold compile vs load.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/aot.py [--runs 3]

1. Cold compile: a new process with an empty NUMBA_CACHE_DIR runs `gc.compile(resnet18)`
   (graph, passes, memory plan, every kernel compiled by Numba in the warm-up run), then
   times 10 calls and saves the artifact (`exe.save`, which compiles the C entries).
2. Load: a new process with another empty NUMBA_CACHE_DIR runs `gc.load(artifact)` and
   computes the first output; the figure is the wall clock of the whole subprocess, from
   start to exit (Python start-up and imports included). It also counts Numba compilations
   (must be 0) and checks the output is bitwise the one of the compiling process.
3. Steady state: one process (with the compile run's Numba cache) holds both the compiled
   executable and the loaded artifact and times 20 calls of each, alternating, so that
   both see the same machine (precompiled code vs Numba's JIT code).

Each is repeated `--runs` times; medians are reported. Writes benchmarks/results/aot.json and
the "AOT" section of benchmarks/RESULTS.md (replacing only that section).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_SECONDS = 1.5

COMPILE = r"""
import json, sys, time
start = time.perf_counter()
import numpy as np
import graphcnn as gc
imported = time.perf_counter()
gc.manual_seed(0)
model = gc.models.resnet18()
t = time.perf_counter()
exe = gc.compile(model, batch_size=1)
compile_s = time.perf_counter() - t
x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
times = []
for _ in range(10):
    t = time.perf_counter(); y = exe(x); times.append(time.perf_counter() - t)
t = time.perf_counter()
exe.save(sys.argv[1])
save_s = time.perf_counter() - t
np.save(sys.argv[2], x); np.save(sys.argv[3], y)
print(json.dumps({"import_s": imported - start, "compile_s": compile_s, "save_s": save_s,
                  "run_median_s": sorted(times)[5], "kernels": exe.report()["kernels"],
                  "arena_bytes": exe.report()["arena_bytes"]}))
"""

LOAD = r"""
import json, sys, time
start = time.perf_counter()
import numpy as np
import numba.core.dispatcher as dispatcher
from numba.core import compiler
compiles = []
_compile = dispatcher.Dispatcher.compile
def counting(self, sig):
    compiles.append(self.py_func.__qualname__)
    return _compile(self, sig)
dispatcher.Dispatcher.compile = counting
_extra = compiler.compile_extra
def counting_extra(*a, **k):
    compiles.append("compile_extra")
    return _extra(*a, **k)
compiler.compile_extra = counting_extra
import graphcnn as gc
imported = time.perf_counter()
exe = gc.load(sys.argv[1])
loaded = time.perf_counter()
x = np.load(sys.argv[2])
y = exe(x)
first = time.perf_counter()
print(json.dumps({"import_s": imported - start, "load_s": loaded - imported,
                  "first_run_s": first - loaded, "in_process_s": first - start,
                  "equal": bool(np.array_equal(y, np.load(sys.argv[3]))),
                  "precompiled": exe.precompiled, "compiles": compiles}), flush=True)
times = []
for _ in range(10):
    t = time.perf_counter(); exe(x); times.append(time.perf_counter() - t)
print(json.dumps({"run_median_s": sorted(times)[5]}))
"""

STEADY = r"""
import json, sys, time
import numpy as np
import graphcnn as gc
gc.manual_seed(0)
jit = gc.compile(gc.models.resnet18(), batch_size=1)
aot = gc.load(sys.argv[1])
x = np.load(sys.argv[2])
assert np.array_equal(jit(x), aot(x))
times = {"jit": [], "aot": []}
for _ in range(20):
    for name, exe in (("jit", jit), ("aot", aot)):
        t = time.perf_counter(); exe(x); times[name].append(time.perf_counter() - t)
print(json.dumps({f"{k}_{s}": f(v) for k, v in times.items()
                  for s, f in (("median_s", lambda v: sorted(v)[10]), ("min_s", min))}))
"""


def run_python(code: str, args: list[str], cache: str) -> tuple[float, list[dict]]:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=1800)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"subprocess failed:\n{proc.stderr[-3000:]}")
    return wall, [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def load_first_output(code_path: str, x: str, y: str, cache: str) -> tuple[float, dict]:
    """Wall clock from start to the first output line (the process then times more calls)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", LOAD, code_path, x, y], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    first_line = proc.stdout.readline()
    wall = time.perf_counter() - start
    rest, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"load subprocess failed:\n{err[-3000:]}")
    info = json.loads(first_line)
    info.update(json.loads(rest.strip().splitlines()[-1]))
    info["warnings"] = err.strip()
    return wall, info


def machine() -> str:
    import numba
    import numpy as np
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {len(os.sched_getaffinity(0))} usable cores ({os.cpu_count()} in the "
            f"machine), {numba.config.NUMBA_NUM_THREADS} Numba threads; Python "
            f"{platform.python_version()}, NumPy {np.__version__}, Numba {numba.__version__}")


def commit() -> str:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], capture_output=True, text=True, cwd=ROOT).stdout
    head = git("rev-parse", "--short", "HEAD").strip()
    dirty = [line for line in git("status", "--porcelain", "graphcnn").splitlines()
             if not line.startswith("??")]
    return head + (f" with uncommitted changes in graphcnn/ ({len(dirty)} files)" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="graphcnn-aot-bench-"))
    artifact, x, y = str(work / "resnet18.gcnn"), str(work / "x.npy"), str(work / "y.npy")
    compiles, loads = [], []
    caches = []
    for run in range(args.runs):
        caches.append(tempfile.mkdtemp(dir=work))
        wall, (info,) = run_python(COMPILE, [artifact, x, y], caches[-1])
        info["wall_s"] = wall
        compiles.append(info)
        print(f"compile run {run + 1}: gc.compile {info['compile_s']:.2f} s (process "
              f"{wall:.2f} s), save {info['save_s']:.2f} s", flush=True)
    for run in range(args.runs):
        wall, info = load_first_output(artifact, x, y, tempfile.mkdtemp(dir=work))
        info["wall_s"] = wall
        loads.append(info)
        print(f"load run {run + 1}: first output after {wall:.3f} s (import "
              f"{info['import_s']:.3f}, load {info['load_s']:.3f}, first run "
              f"{info['first_run_s']:.3f}); compiles {len(info['compiles'])}, bitwise equal "
              f"{info['equal']}", flush=True)
    _, (steady,) = run_python(STEADY, [artifact, x], caches[0])
    print(f"steady state (one process, alternating): JIT {steady['jit_median_s'] * 1e3:.1f} "
          f"ms, precompiled {steady['aot_median_s'] * 1e3:.1f} ms (medians of 20)", flush=True)
    load_after = os.getloadavg()[0]

    def med(rows: list[dict], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    summary = {
        "machine": machine(), "commit": commit(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load_average_before": load_before, "load_average_after": load_after,
        "artifact_bytes": os.path.getsize(artifact),
        "compile_runs": compiles, "load_runs": loads,
        "cold_compile_s": med(compiles, "compile_s"), "cold_process_s": med(compiles, "wall_s"),
        "save_s": med(compiles, "save_s"), "load_wall_s": med(loads, "wall_s"),
        "load_import_s": med(loads, "import_s"), "load_load_s": med(loads, "load_s"),
        "load_first_run_s": med(loads, "first_run_s"),
        "jit_run_median_s": med(compiles, "run_median_s"),
        "aot_run_median_s": med(loads, "run_median_s"),
        "steady": steady,
        "all_equal": all(r["equal"] for r in loads),
        "compilations_during_load": sum(len(r["compiles"]) for r in loads),
        "kernels": compiles[0]["kernels"], "arena_bytes": compiles[0]["arena_bytes"],
    }
    (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
    (ROOT / "benchmarks" / "results" / "aot.json").write_text(json.dumps(summary, indent=1))
    write_results(summary, args.runs)
    print(f"cold compile {summary['cold_compile_s']:.2f} s; fresh process to first output "
          f"{summary['load_wall_s']:.3f} s (goal < {GOAL_SECONDS} s)")


def write_results(s: dict, runs: int) -> None:
    met = "met" if s["load_wall_s"] < GOAL_SECONDS else "MISSED"
    section = f"""## AOT

Command: `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/aot.py`

Machine: {s['machine']}; commit {s['commit']}; {s['date']}; load average {s['load_average_before']:.2f} before, {s['load_average_after']:.2f} after (1-minute).

ResNet-18 (`gc.models.resnet18()`, 224x224, batch 1, opt level 2: {s['kernels']} kernels, {s['arena_bytes'] / 2**20:.2f} MiB arena), medians of {runs} runs, each in a new process with its own empty `NUMBA_CACHE_DIR`:

| | median | runs |
|---|---|---|
| cold in-process compile (`gc.compile`, every kernel compiled by Numba) | {s['cold_compile_s']:.2f} s | {', '.join(f"{r['compile_s']:.2f}" for r in s['compile_runs'])} |
| ... that whole process (start, import, compile) | {s['cold_process_s']:.2f} s | {', '.join(f"{r['wall_s']:.2f}" for r in s['compile_runs'])} |
| `exe.save` (compiles the C entries, writes {s['artifact_bytes'] / 2**20:.1f} MiB) | {s['save_s']:.2f} s | {', '.join(f"{r['save_s']:.2f}" for r in s['compile_runs'])} |
| **fresh process: start -> `gc.load` -> first output** (subprocess wall clock) | **{s['load_wall_s']:.3f} s** | {', '.join(f"{r['wall_s']:.3f}" for r in s['load_runs'])} |
| ... of which `import numpy, numba, graphcnn` | {s['load_import_s']:.3f} s | |
| ... of which `gc.load` (read, verify SHA-256, rebuild graph, map object code) | {s['load_load_s']:.3f} s | |
| ... of which the first call | {s['load_first_run_s']:.3f} s | |
| steady-state call, Numba JIT code (one process, alternating with the next row; min) | {s['steady']['jit_median_s'] * 1e3:.1f} ms | min {s['steady']['jit_min_s'] * 1e3:.1f} ms |
| steady-state call, the artifact's precompiled code (same process; min) | {s['steady']['aot_median_s'] * 1e3:.1f} ms | min {s['steady']['aot_min_s'] * 1e3:.1f} ms |

Numba compilations while loading and running: {s['compilations_during_load']}; outputs bitwise equal to the compiling process's: {s['all_equal']}. Goal (fresh process to first output < {GOAL_SECONDS} s): {s['load_wall_s']:.3f} s -> {met}.

Raw figures: `benchmarks/results/aot.json`.
"""
    path = ROOT / "benchmarks" / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start = text.find("## AOT")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


if __name__ == "__main__":
    main()
