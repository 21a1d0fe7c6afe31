"""Throughput of one executable called from 1 thread vs 2 threads at once (calls/s).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/threads.py \
        [--seconds 2] [--repeats 5] [--size 224] [--no-unshared]

Cases: ResNet-18 (batch 1, `--size` x `--size` images, 224 by default, 1000 classes),
LeNet-5 (32x32, batch 1 and batch 64), each compiled once with `gc.compile` on the cpu
backend. For each repeat, in this order on the same executable: the main thread calls it in a
loop for `--seconds` (the baseline); then one other thread does (a server's worker: see
case() for why it is slower); then two threads, started together, call it; then
(unless --no-unshared) two threads again with the cores not shared between the calls
(each call on all of Numba's threads, as GRAPHCNN_SHARE_CORES=0 makes them: the
oversubscribed baseline). A figure is completed calls over the window; the table gives the median over
the repeats, and the ratio 2 threads / 1 thread (the goal: >= 1). Every call's output is
checked against the single-thread one (allclose, rtol 1e-5).

Prints a table and writes benchmarks/results/threads.json (not RESULTS.md).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import graphcnn as gc  # noqa: E402
from graphcnn.backends.cpu import threads as cpu_threads  # noqa: E402
from graphcnn.bench.common import machine, machine_line, text_table, write_json  # noqa: E402


def throughput(call: Callable[[], Any], workers: int, seconds: float) -> float:
    """Calls per second that `workers` threads, started together, complete in `seconds`."""
    start = threading.Barrier(workers + 1)
    counts = [0] * workers
    deadline = [0.0]

    def work(w: int) -> None:
        start.wait()
        n = 0
        while time.perf_counter() < deadline[0]:
            call()
            n += 1
        counts[w] = n

    pool = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
    for t in pool:
        t.start()
    begin = time.perf_counter()
    deadline[0] = begin + seconds
    start.wait()
    for t in pool:
        t.join()
    return sum(counts) / (time.perf_counter() - begin)


def in_this_thread(call: Callable[[], Any], seconds: float) -> float:
    """Calls per second of `call` looped in the calling thread (the main one): the best a
    single caller gets, with no other thread's OpenMP team alive (see below)."""
    n, begin = 0, time.perf_counter()
    while time.perf_counter() < begin + seconds:
        call()
        n += 1
    return n / (time.perf_counter() - begin)


def unshared(fn: Callable[[], float]) -> float:
    """fn() with every call on all its thread's Numba threads (the cores not shared, as
    GRAPHCNN_SHARE_CORES=0 does)."""
    cpu_threads.SHARE_CORES = False
    try:
        return fn()
    finally:
        cpu_threads.SHARE_CORES = True


def case(name: str, model: Any, batch: int, args: argparse.Namespace) -> dict[str, Any]:
    exe = gc.compile(model, batch_size=batch)
    shape = exe.input_values[exe.input_names[0]].shape
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    want = exe(x)
    wrong = [0]

    def call() -> None:
        if not np.allclose(exe(x), want, rtol=1e-5, atol=1e-6):
            wrong[0] += 1

    for _ in range(3):
        call()
    # "1 thread" is the main thread's loop: the honest baseline. "1 pool thread" is one
    # other thread calling while the main thread's OpenMP team lives (idle), as a server's
    # worker does: GNU OpenMP then counts more threads than cores and its workers stop
    # spinning between kernels (they sleep and are woken), which costs every kernel.
    runs: dict[str, list[float]] = {"1 thread": [], "1 pool thread": [], "2 threads": [],
                                    "2 unshared": []}
    for _ in range(args.repeats):
        runs["1 thread"].append(in_this_thread(call, args.seconds))
        runs["1 pool thread"].append(throughput(call, 1, args.seconds))
        runs["2 threads"].append(throughput(call, 2, args.seconds))
        if not args.no_unshared:
            runs["2 unshared"].append(unshared(lambda: throughput(call, 2, args.seconds)))
    medians = {k: statistics.median(v) for k, v in runs.items() if v}
    report = exe.report()
    return {"case": name, "batch": batch, "runs": runs, "median_calls_per_s": medians,
            "ratio_2_over_1": medians["2 threads"] / medians["1 thread"],
            "ratio_unshared_over_1": (medians["2 unshared"] / medians["1 thread"]
                                      if "2 unshared" in medians else None),
            "wrong_calls": wrong[0], "contexts": report["contexts"],
            "per_call_bytes": report["per_call_bytes"], "peak_bytes": report["peak_bytes"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="window per figure")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=224, help="ResNet-18's image size")
    parser.add_argument("--no-unshared", action="store_true",
                        help="skip the baseline with the cores not shared between calls")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "threads.json"))
    args = parser.parse_args()

    info = machine()
    print(machine_line(info))
    print(f"threading layer: {cpu_threads.layer()}")
    gc.manual_seed(0)
    cases = [(f"resnet18 {args.size}x{args.size}",
              gc.models.resnet18(input_size=args.size), 1),
             ("lenet5 32x32", gc.models.lenet5(), 1),
             ("lenet5 32x32", gc.models.lenet5(), 64)]
    results = []
    for name, model, batch in cases:
        result = case(name, model, batch, args)
        results.append(result)
        m = result["median_calls_per_s"]
        print(f"  {name} batch {batch}: 1 thread {m['1 thread']:.1f}/s, 2 threads "
              f"{m['2 threads']:.1f}/s", flush=True)
    header = ["model", "batch", "1 thread (calls/s)", "1 pool thread", "2 threads (calls/s)",
              "2 / 1",
              "2 unshared (calls/s)", "unshared / 1", "contexts", "per call MiB", "wrong"]
    rows = []
    for r in results:
        m = r["median_calls_per_s"]
        rows.append([r["case"], str(r["batch"]), f"{m['1 thread']:.1f}",
                     f"{m['1 pool thread']:.1f}",
                     f"{m['2 threads']:.1f}", f"{r['ratio_2_over_1']:.2f}",
                     f"{m['2 unshared']:.1f}" if "2 unshared" in m else "-",
                     f"{r['ratio_unshared_over_1']:.2f}" if r["ratio_unshared_over_1"]
                     else "-", str(r["contexts"]), f"{r['per_call_bytes'] / 2**20:.1f}",
                     str(r["wrong_calls"])])
    print()
    print(text_table(header, rows))
    print(f"(medians of {args.repeats} windows of {args.seconds:g} s each)")
    path = write_json(args.out, {"machine": info, "threading_layer": cpu_threads.layer(),
                                 "seconds": args.seconds, "repeats": args.repeats,
                                 "results": results})
    print(f"wrote {path}")
    return 1 if any(r["wrong_calls"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
