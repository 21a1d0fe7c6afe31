"""Optimizer benchmark: what opt level 2 buys over opt level 0, measured in one run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/optimizer.py

* ResNet-18 inference, batch 1, 3x224x224 (gc.models.resnet18()): kernels, arena_bytes,
  naive_bytes, lower_bound_bytes, arena/lower_bound, arena/naive, compile time, median run
  time, at opt level 0 and 2;
* the LeNet-5 training step, batch 64 (gc.value_and_grad(gc.models.lenet5(), ...)):
  the same memory figures and the median step time at opt level 0 and 2.

Both levels run the same model (the same weights), and their results are compared (the
optimizer must not change them). `naive_bytes` is, as in Executable.report(), the sum of
the intermediates of the graph as the model wrote it (what a runtime without an optimizer
allocates, one buffer per value); the table also gives the arena (the memory plan's
intermediates, report()['arena_bytes']; its peak_bytes adds the kernels' workspace and
prepacked weights, kept in the JSON) against
`optimized_naive_bytes`, the intermediates of the optimized graph (what the memory plan
alone saves, after fusion removed the groups' inner tensors).

Prints a table, the tensors alive at the peak step of each plan, the targets
(met, or missed by how much), writes benchmarks/results/optimizer.json and the section
"Optimizer" of benchmarks/RESULTS.md (replacing that section only).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
COMMAND = ("env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python "
           "benchmarks/optimizer.py")
SECTION = "## Optimizer"
LEVELS = (0, 2)


# ---- measuring --------------------------------------------------------------------------

def interleaved_times(fns: dict[int, Callable[[], Any]], repeats: int) -> dict[int, list[float]]:
    """Wall-clock seconds of each function, `repeats` times, alternating between them
    (0, 2, 0, 2, ...) so that anything else slowing the machine down hits both levels
    alike."""
    times: dict[int, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
    return times


def peak_tensors(graph: Any, plan: Any, top: int = 4) -> dict[str, Any]:
    """The step where the plan's live buffers add up to the most, and the biggest of them
    (what dominates the peak)."""
    steps = graph.compute_nodes()
    if not plan.buffers:
        return {"step": None, "live_bytes": 0, "tensors": []}
    last = max(b.last for b in plan.buffers)
    best_step, best = 0, -1
    for s in range(last + 1):
        total = sum(b.size for b in plan.buffers if b.first <= s <= b.last)
        if total > best:
            best_step, best = s, total
    from graphcnn.ops.fused import op_label
    made_by = {v.id: n for n in steps for v in n.outputs}
    live = sorted((b for b in plan.buffers if b.first <= best_step <= b.last),
                  key=lambda b: -b.size)
    rows = []
    for b in live[:top]:
        v = b.values[0]
        rows.append({"tensor": ",".join(f"%{x.id}" for x in b.values), "type": str(v.type),
                     "bytes": b.size, "made_by": op_label(made_by[v.id]),
                     "live": [b.first, b.last]})
    at = op_label(steps[best_step]) if best_step < len(steps) else "end"
    return {"step": best_step, "op": at, "live_bytes": best, "buffers_live": len(live),
            "tensors": rows}


def describe(exe: Any, times: list[float]) -> dict[str, Any]:
    rep = exe.report()
    out = {k: rep[k] for k in ("ops_before", "kernels", "arena_bytes", "workspace_bytes",
                               "packed_weights_bytes", "peak_bytes", "naive_bytes",
                               "lower_bound_bytes", "compile_seconds")}
    out["arena_over_lower_bound"] = rep["arena_bytes"] / rep["lower_bound_bytes"]
    out["arena_over_naive"] = rep["arena_bytes"] / rep["naive_bytes"]
    out["optimized_naive_bytes"] = rep["optimized_naive_bytes"]
    out["arena_over_optimized_naive"] = rep["arena_bytes"] / rep["optimized_naive_bytes"]
    out["median_seconds"] = statistics.median(times)
    out["min_seconds"] = min(times)
    out["times"] = [round(t, 5) for t in times]
    out["peak"] = peak_tensors(exe.graph, exe.runner.plan)
    return out


def bench_resnet18(batch: int, repeats: int, seed: int) -> dict[str, Any]:
    import graphcnn as gc

    gc.manual_seed(seed)
    model = gc.models.resnet18()
    rng = np.random.default_rng(seed)
    for key, value in sorted(model.parameters().items()):  # non-trivial BN statistics
        if key.endswith("running_var"):
            value[...] = rng.uniform(0.5, 2.0, value.shape)
        elif key.endswith("running_mean"):
            value[...] = rng.normal(0, 0.1, value.shape)
    x = np.random.default_rng(seed).normal(size=(batch, 3, 224, 224)).astype(np.float32)
    results, outputs, exes = {}, {}, {}
    for level in LEVELS:
        print(f"  resnet18 opt {level}: compiling ...", flush=True)
        exes[level] = gc.compile(model, batch_size=batch, opt_level=level)
    for level in LEVELS:
        outputs[level] = exes[level](x)
    times = interleaved_times({level: (lambda e=exes[level]: e(x)) for level in LEVELS},
                              repeats)
    for level in LEVELS:
        results[f"opt{level}"] = describe(exes[level], times[level])
        print(f"  resnet18 opt {level}: {results[f'opt{level}']['median_seconds']:.3f} s "
              f"median of {repeats}", flush=True)
    diff = float(np.max(np.abs(outputs[2] - outputs[0])))
    scale = float(np.max(np.abs(outputs[0])))
    results["max_abs_diff_opt2_vs_opt0"] = diff
    results["max_abs_output"] = scale
    results["speedup"] = results["opt0"]["median_seconds"] / results["opt2"]["median_seconds"]
    return results


def bench_lenet5_training(batch: int, repeats: int, seed: int) -> dict[str, Any]:
    import graphcnn as gc

    gc.manual_seed(seed)
    model = gc.models.lenet5()
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, 1, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, batch)
    results, outputs, steps = {}, {}, {}
    for level in LEVELS:
        steps[level] = gc.value_and_grad(model, batch_size=batch, opt_level=level)
    for level in LEVELS:
        outputs[level] = steps[level](x, labels)
    times = interleaved_times({level: (lambda s=steps[level]: s(x, labels))
                               for level in LEVELS}, repeats)
    for level in LEVELS:
        results[f"opt{level}"] = describe(steps[level].executable, times[level])
        print(f"  lenet5 training opt {level}: "
              f"{results[f'opt{level}']['median_seconds'] * 1e3:.2f} ms median of {repeats}",
              flush=True)
    (loss0, g0), (loss2, g2) = outputs[0], outputs[2]
    results["loss_diff_opt2_vs_opt0"] = abs(loss2 - loss0)
    results["max_abs_grad_diff_opt2_vs_opt0"] = max(
        float(np.max(np.abs(g2[k] - g0[k]))) for k in g0)
    results["speedup"] = results["opt0"]["median_seconds"] / results["opt2"]["median_seconds"]
    return results


# ---- targets --------------------------------------------------------------------------------

def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    r, l = res["resnet18_inference"]["opt2"], res["lenet5_training"]["opt2"]
    rows = [
        ("ResNet-18 b1 opt 2: arena <= 1.1 x lower_bound", r["arena_over_lower_bound"], 1.1),
        ("ResNet-18 b1 opt 2: arena <= 0.25 x naive", r["arena_over_naive"], 0.25),
        ("ResNet-18 b1 opt 2: kernels <= 30", r["kernels"], 30),
        ("LeNet-5 train b64 opt 2: arena <= 0.5 x naive", l["arena_over_naive"], 0.5),
    ]
    out = []
    for name, value, limit in rows:
        met = value <= limit
        out.append({"target": name, "value": value, "limit": limit, "met": met,
                    "missed_by": None if met else value / limit})
    # the same ratios against the optimized graph's intermediates (planning alone)
    for name, value, limit in [
            ("ResNet-18 b1 opt 2: arena <= 0.25 x optimized graph's intermediates",
             r["arena_over_optimized_naive"], 0.25),
            ("LeNet-5 train b64 opt 2: arena <= 0.5 x optimized graph's intermediates",
             l["arena_over_optimized_naive"], 0.5)]:
        met = value <= limit
        out.append({"target": name, "value": value, "limit": limit, "met": met,
                    "missed_by": None if met else value / limit, "secondary": True})
    return out


# ---- the machine --------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    import numba

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"cpu": cpu, "cpu_count": os.cpu_count(), "usable_cores": usable,
            "numba_threads": numba.get_num_threads(), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__,
            "load_average_before": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "commit": git("rev-parse", "--short", "HEAD"),
            "uncommitted_changes_in_graphcnn": git("status", "--porcelain", "graphcnn")
            .splitlines()}


# ---- output ---------------------------------------------------------------------------------

def fmt_bytes(n: float) -> str:
    return f"{n / 2**20:.2f} MiB"


def _secs(t: float, unit: str) -> str:
    return f"{t:.3f} s" if unit == "s" else f"{t * 1e3:.2f} ms"


def table(res: dict[str, Any]) -> str:
    header = ("workload", "opt", "kernels", "arena", "naive", "lower bound", "arena/lb",
              "arena/naive", "arena/opt-naive", "compile s", "median time", "min time")
    rows = []
    for key, label, unit in (("resnet18_inference", "ResNet-18 inference b1", "s"),
                             ("lenet5_training", "LeNet-5 train step b64", "ms")):
        for level in LEVELS:
            r = res[key][f"opt{level}"]
            t = r["median_seconds"]
            rows.append((label, str(level), str(r["kernels"]), fmt_bytes(r["arena_bytes"]),
                         fmt_bytes(r["naive_bytes"]), fmt_bytes(r["lower_bound_bytes"]),
                         f"{r['arena_over_lower_bound']:.3f}", f"{r['arena_over_naive']:.3f}",
                         f"{r['arena_over_optimized_naive']:.3f}", f"{r['compile_seconds']:.2f}",
                         _secs(t, unit), _secs(r["min_seconds"], unit)))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def peak_text(res: dict[str, Any]) -> str:
    lines = []
    for key, label in (("resnet18_inference", "ResNet-18 inference b1"),
                       ("lenet5_training", "LeNet-5 train step b64")):
        for level in LEVELS:
            p = res[key][f"opt{level}"]["peak"]
            parts = ", ".join(f"{t['made_by']} {t['type']} ({fmt_bytes(t['bytes'])}, "
                              f"live {t['live'][0]}..{t['live'][1]})" for t in p["tensors"])
            lines.append(f"- {label}, opt {level}: peak at step {p['step']} ({p['op']}), "
                         f"{fmt_bytes(p['live_bytes'])} in {p['buffers_live']} buffers; "
                         f"largest: {parts}")
    return "\n".join(lines)


def targets_text(rows: list[dict[str, Any]]) -> str:
    lines = []
    for t in rows:
        value = t["value"]
        shown = f"{value:.3f}" if isinstance(value, float) else str(value)
        status = "met" if t["met"] else f"MISSED by {t['missed_by']:.2f}x"
        extra = " (secondary)" if t.get("secondary") else ""
        lines.append(f"- {t['target']}{extra}: {shown} -> {status}")
    return "\n".join(lines)


def markdown(res: dict[str, Any], args: argparse.Namespace) -> str:
    m, r, l = res["machine"], res["resnet18_inference"], res["lenet5_training"]
    dirty = m["uncommitted_changes_in_graphcnn"]
    return "\n".join([
        SECTION, "",
        f"Command: `{COMMAND}`"
        + (f" (options: {' '.join(sys.argv[1:])})" if sys.argv[1:] else ""), "",
        f"Machine: {m['cpu']}, {m['usable_cores']} usable cores ({m['cpu_count']} in the "
        f"machine), {m['numba_threads']} Numba threads; Python {m['python']}, NumPy "
        f"{m['numpy']}, Numba {m['numba']}; commit {m['commit']}"
        + (f" with uncommitted changes in graphcnn/ ({len(dirty)} files)" if dirty else "")
        + f"; {res['date']}.", "",
        f"Medians over {args.resnet_repeats} runs (ResNet-18) and {args.lenet_repeats} steps "
        f"(LeNet-5), opt levels 0 and 2 alternating, after the warm-up run that gc.compile "
        f"/ gc.value_and_grad do; load average {_load(m)}. "
        f"Memory in MiB (2^20 bytes). `naive` is Executable.report()['naive_bytes'], the sum "
        f"of the intermediates of the graph as the model wrote it (one buffer per value, no "
        f"optimizer); `arena/opt-naive` divides the arena by the optimized graph's "
        f"intermediates (report()['optimized_naive_bytes']: what planning alone "
        f"saves).", "",
        table(res), "",
        f"Speed-up of opt level 2 over 0: ResNet-18 inference {r['speedup']:.2f}x, LeNet-5 "
        f"training step {l['speedup']:.2f}x. Same results: ResNet-18 logits differ by at "
        f"most {r['max_abs_diff_opt2_vs_opt0']:.2e} (logits up to "
        f"{r['max_abs_output']:.2f}); LeNet-5 loss by {l['loss_diff_opt2_vs_opt0']:.2e}, "
        f"gradients by {l['max_abs_grad_diff_opt2_vs_opt0']:.2e}.", "",
        "Targets:", "", targets_text(res["targets"]), "",
        "What the peak is made of (the step where the plan's live buffers add up to the "
        "most, and the largest of them):", "", peak_text(res), "",
        "Raw figures: `benchmarks/results/optimizer.json`.", ""])


def _load(m: dict[str, Any]) -> str:
    before, after = m.get("load_average_before"), m.get("load_average_after")
    if not before:
        return "unknown"
    text = f"{before[0]:.2f} before"
    return text + (f", {after[0]:.2f} after (1-minute)" if after else "")


def write_section(path: Path, text: str) -> None:
    """Replace the section (from its heading to the next '## ' heading) or append it."""
    old = path.read_text() if path.exists() else "# Benchmark results\n"
    start = old.find(SECTION)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = old.find("\n## ", start + len(SECTION))
        new = old[:start] + text + ("" if end < 0 else old[end:])
    path.write_text(new.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resnet-repeats", type=int, default=10,
                        help="timed ResNet-18 runs per opt level (default 10)")
    parser.add_argument("--lenet-repeats", type=int, default=20,
                        help="timed LeNet-5 steps per opt level (default 20)")
    parser.add_argument("--resnet-batch", type=int, default=1)
    parser.add_argument("--lenet-batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=str(HERE / "results" / "optimizer.json"))
    parser.add_argument("--results-md", default=str(HERE / "RESULTS.md"),
                        help="markdown file whose 'Optimizer' section is rewritten")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    info = machine()
    print(f"machine: {info['cpu']}, {info['usable_cores']} usable cores, "
          f"{info['numba_threads']} Numba threads, load {info['load_average_before']}")
    res: dict[str, Any] = {"command": COMMAND, "argv": sys.argv[1:], "machine": info,
                           "date": time.strftime("%Y-%m-%d %H:%M %Z")}
    start = time.perf_counter()
    print("ResNet-18 inference, batch", args.resnet_batch)
    res["resnet18_inference"] = bench_resnet18(args.resnet_batch, args.resnet_repeats,
                                               args.seed)
    print("LeNet-5 training step, batch", args.lenet_batch)
    res["lenet5_training"] = bench_lenet5_training(args.lenet_batch, args.lenet_repeats,
                                                   args.seed)
    res["total_seconds"] = time.perf_counter() - start
    res["machine"]["load_average_after"] = os.getloadavg() if hasattr(os, "getloadavg") \
        else None
    res["targets"] = targets(res)

    print()
    print(table(res))
    print()
    print(targets_text(res["targets"]))
    print()
    print(peak_text(res))
    if not args.no_write:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2, default=float) + "\n")
        write_section(Path(args.results_md), markdown(res, args))
        print(f"\nwrote {args.json} and the '{SECTION[3:]}' section of {args.results_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
