"""One executable for any batch size against fixed-batch executables, at the same batch.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/dynamic_batch.py \
        [--models resnet18,mobilenet_v2] [--batches 1,16] [--max-batch 16] [--repeats 60]
        [--rounds 10]

For each model: one executable compiled with ``batch_size=None, max_batch=M``, and for
each batch B one compiled with ``batch_size=B``. The two are timed at B in alternating
blocks of calls (graphcnn/bench/common.py measure_interleaved: `--rounds` rounds, a pause
before each block so that the other's threads have gone to sleep), so that this shared
machine's slow phases hit both alike; the figure is each one's median over `--repeats`
calls, the ratio dynamic / fixed (1.0: as fast; the target is at most 1.10). Also the
arenas (the dynamic one is planned for M) and the compile times. Writes
benchmarks/results/dynamic_batch.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import graphcnn as gc  # noqa: E402
from graphcnn.bench.common import measure_interleaved  # noqa: E402

PAUSE_S = 0.5   # longer than the worker threads spin after a call (GOMP_SPINCOUNT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,mobilenet_v2")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    rows = []
    for name in args.models.split(","):
        model = getattr(gc.models, name)()
        start = time.perf_counter()
        dynamic = gc.compile(model, batch_size=None, max_batch=args.max_batch)
        dynamic_compile = time.perf_counter() - start
        shape = tuple(model.inputs[0].type.shape[1:])
        for batch in batches:
            x = np.random.default_rng(batch).standard_normal((batch, *shape)).astype(np.float32)
            start = time.perf_counter()
            fixed = gc.compile(model, batch_size=batch)
            fixed_compile = time.perf_counter() - start
            same = float(np.max(np.abs(dynamic(x) - fixed(x))))
            timings = measure_interleaved({"fixed": lambda f=fixed, x=x: f(x),
                                           "dynamic": lambda d=dynamic, x=x: d(x)},
                                          args.repeats, warmup=3, rounds=args.rounds,
                                          gap_s=PAUSE_S)
            fixed_ms = timings["fixed"]["median_ms"]
            dynamic_ms = timings["dynamic"]["median_ms"]
            row = {"model": name, "batch": batch, "max_batch": args.max_batch,
                   "fixed_ms": round(fixed_ms, 3), "dynamic_ms": round(dynamic_ms, 3),
                   "dynamic_over_fixed": round(dynamic_ms / fixed_ms, 3),
                   "max_abs_difference": same,
                   "fixed_arena_mib": round(fixed.report()["arena_bytes"] / 2**20, 2),
                   "dynamic_arena_mib": round(dynamic.report()["arena_bytes"] / 2**20, 2),
                   "fixed_compile_s": round(fixed_compile, 1),
                   "dynamic_compile_s": round(dynamic_compile, 1)}
            rows.append(row)
            print(f"{name:14s} batch {batch:3d}: fixed {fixed_ms:8.2f} ms, any-batch "
                  f"{dynamic_ms:8.2f} ms, ratio {dynamic_ms / fixed_ms:.3f} "
                  f"(max |diff| {same:.2g})", flush=True)
    out = ROOT / "benchmarks" / "results" / "dynamic_batch.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                               "command": " ".join(sys.argv), "rows": rows}, indent=1))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
