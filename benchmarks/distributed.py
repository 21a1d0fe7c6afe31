"""Data-parallel training on 1 and 2 MPI ranks: samples/s, allreduce time, bytes per step.

    .venv/bin/python benchmarks/distributed.py [--worlds 1,2] [--steps 10] [--warmup 2]
                                               [--cases lenet5,resnet18] [--resnet-times]

For each case and world size W the script launches ``mpiexec -n W`` (the venv's, from
the ``distributed`` extra) on itself; each rank compiles the gradient step for its
per-rank batch and runs `--warmup` + `--steps` steps: the compiled step (forward and
backward), the averaging of the gradients (graphcnn/distributed/buckets.py: copies into
the buckets, an Iallreduce per bucket, the wait, the 1/W scaling), the SGD update. The
machine's cores are split between the ranks (`--threads` // W Numba threads each;
`--threads` defaults to the cores). Figures are
the median over the timed steps of the slowest rank's time (an allreduce waits for the
last rank, so a rank's allreduce time includes the others' lateness); "allreduce alone"
repeats the averaging after a barrier, the transfer without the waiting.

Cases: LeNet-5 (32x32 digits-sized input, 10 classes, 32 samples per rank) and
ResNet-18 with its full 1000-class head (11.7 M parameters: the real 46.8 MB of
gradients) on 32x32 inputs (8 per rank), so the compute stays short on a small machine.
Bytes per step: the gradient bytes each rank contributes, and what a ring allreduce sends
per rank (2 (W-1)/W times that).

``--resnet-times`` also measures one process's training step of ResNet-18 and ResNet-50
at 224x224 (batch 2, all cores), the compute times a scaling model needs, and prints the
ring-allreduce model (2 (p-1)/p x bytes / bandwidth + 2 (p-1) x latency per bucket) for
8, 64 and 512 ranks on 25 and 200 Gb/s. Writes benchmarks/results/distributed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CASES = {   # name: (per-rank batch, builder arguments)
    "lenet5": 32,
    "resnet18": 8,
}
BANDWIDTHS_GBIT = (25, 200)
LATENCY_S = {25: 10e-6, 200: 2e-6}   # per message: TCP-class Ethernet, InfiniBand-class
RANKS = (8, 64, 512)
PER_RANK_BATCH = 32   # the modelled per-rank batch at 224x224


def build(case: str, size: int = 32) -> Any:
    import graphcnn as gc

    gc.manual_seed(0)
    if case == "lenet5":
        return gc.models.lenet5(num_classes=10)
    return getattr(gc.models, case)(num_classes=1000, input_size=size)


def worker(case: str, steps: int, warmup: int) -> dict[str, Any]:
    """One rank's measurements (run under mpiexec); rank 0 returns the slowest rank's."""
    import graphcnn as gc
    from graphcnn.distributed.parallel import MPIParallel

    par = MPIParallel()   # splits the cores between the ranks on this machine
    comm, mpi = par.comm, par.mpi
    if par.world_size == 1:   # the Trainer skips averaging then; measured all the same
        from graphcnn.distributed.buckets import GradientBuckets
        par.average = lambda loss, grads: _buckets(par, GradientBuckets, grads).average(
            loss, grads)
    batch = CASES[case]
    model = build(case)
    shape = tuple(model.inputs[0].type.shape[1:])
    classes = 10 if case == "lenet5" else 1000
    rng = np.random.default_rng(par.rank)
    x = rng.normal(size=(batch, *shape)).astype(np.float32)
    y = rng.integers(0, classes, batch)
    t0 = time.perf_counter()
    step = gc.value_and_grad(model, "cross_entropy", batch_size=batch, backend="cpu")
    compile_s = time.perf_counter() - t0
    params = model.trainable_parameters()
    opt = gc.optim.SGD(lr=0.01, momentum=0.9)
    times = []
    for i in range(warmup + steps):
        comm.Barrier()
        a = time.perf_counter()
        loss, grads = step(x, y)
        b = time.perf_counter()
        loss, avg = par.average(loss, grads)
        c = time.perf_counter()
        opt.step(params, avg)
        d = time.perf_counter()
        if i >= warmup:
            times.append((d - a, b - a, c - b))
    alone = []
    for _ in range(max(3, steps)):
        comm.Barrier()
        a = time.perf_counter()
        par.average(loss, grads)
        alone.append(time.perf_counter() - a)
    mine = np.array([[statistics.median(t[k] for t in times) for k in range(3)]
                     + [statistics.median(alone), compile_s]])
    slowest = np.empty_like(mine)
    comm.Allreduce(mine, slowest, op=mpi.MAX)
    step_s, compute_s, allreduce_s, alone_s, compile_s = (float(v) for v in slowest[0])
    nbytes = par.buckets.nbytes
    w = par.world_size
    return {"case": case, "world_size": w, "batch_per_rank": batch,
            "threads_per_rank": _threads(), "step_s": step_s, "compute_s": compute_s,
            "allreduce_s": allreduce_s, "allreduce_alone_s": alone_s,
            "samples_per_s": w * batch / step_s, "gradient_bytes": nbytes,
            "ring_bytes_sent_per_rank": 2 * (w - 1) / w * nbytes,
            "buckets": len(par.buckets.buffers), "compile_s": compile_s,
            "parameters": model.num_parameters(trainable_only=True)}


def _buckets(par: Any, cls: Any, grads: Any) -> Any:
    if par.buckets is None:
        par.buckets = cls(par.comm, grads)
    return par.buckets


def _threads() -> int:
    import numba

    return int(numba.get_num_threads())


def resnet_time(depth: int, steps: int) -> dict[str, Any]:
    """One process's training step (forward, backward) of ResNet-depth at 224x224."""
    import graphcnn as gc

    batch = 2
    model = build(f"resnet{depth}", 224)
    x = np.random.default_rng(0).normal(size=(batch, 3, 224, 224)).astype(np.float32)
    y = np.arange(batch) % 1000
    step = gc.value_and_grad(model, "cross_entropy", batch_size=batch, backend="cpu")
    step(x, y)
    times = []
    for _ in range(steps):
        a = time.perf_counter()
        step(x, y)
        times.append(time.perf_counter() - a)
    params = model.num_parameters(trainable_only=True)
    return {"model": f"resnet{depth}", "batch": batch, "step_s": statistics.median(times),
            "per_sample_s": statistics.median(times) / batch, "parameters": params,
            "gradient_bytes": 4 * params}


def ring_model(t: dict[str, Any]) -> list[dict[str, Any]]:
    """Scaling efficiency T_compute / (T_compute + T_allreduce) with no overlap, and with
    full overlap T_compute / max(T_compute, T_allreduce), per-rank batch PER_RANK_BATCH."""
    from graphcnn.distributed.buckets import BUCKET_BYTES

    compute = t["per_sample_s"] * PER_RANK_BATCH
    nbytes = t["gradient_bytes"]
    buckets = -(-nbytes // BUCKET_BYTES)
    rows = []
    for gbit in BANDWIDTHS_GBIT:
        bw = gbit * 1e9 / 8
        for p in RANKS:
            transfer = 2 * (p - 1) / p * nbytes / bw
            latency = 2 * (p - 1) * LATENCY_S[gbit]
            bucketed = transfer + buckets * latency
            per_tensor = transfer + t["tensors"] * latency
            rows.append({"model": t["model"], "gbit": gbit, "ranks": p,
                         "compute_s": compute, "allreduce_s": bucketed,
                         "allreduce_per_tensor_s": per_tensor,
                         "efficiency": compute / (compute + bucketed),
                         "efficiency_overlap": compute / max(compute, bucketed),
                         "efficiency_per_tensor": compute / (compute + per_tensor)})
    return rows


def launch(case: str, world: int, args: argparse.Namespace) -> dict[str, Any]:
    mpiexec = Path(sys.executable).parent / "mpiexec"
    command = [str(mpiexec) if mpiexec.exists() else "mpiexec", "-n", str(world),
               sys.executable, __file__, "--worker", case, "--steps", str(args.steps),
               "--warmup", str(args.warmup)]
    # the ranks split the threads: --threads // W each
    env = dict(os.environ, PYTHONPATH=str(ROOT),
               NUMBA_NUM_THREADS=str(max(1, args.threads // world)))
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3000)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{case} on {world} ranks failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worlds", default="1,2")
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads in all, split between the ranks (default: the cores)")
    p.add_argument("--resnet-times", action="store_true")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        result = worker(args.worker, args.steps, args.warmup)
        from graphcnn import distributed
        if distributed.is_main():
            print("RESULT " + json.dumps(result), flush=True)
        return
    from graphcnn.bench.common import machine, machine_line, text_table, write_json

    m = machine()
    load_before = os.getloadavg()[0]
    runs = [launch(c, int(w), args) for c in args.cases.split(",")
            for w in args.worlds.split(",")]
    print(f"machine: {machine_line(m)}; load average {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")
    base = {r["case"]: r["samples_per_s"] for r in runs if r["world_size"] == 1}
    print(text_table(
        ["case", "W", "batch/rank", "threads/rank", "step ms", "compute ms", "allreduce ms",
         "allreduce alone ms", "samples/s", "speed-up", "grad MB", "ring MB sent/rank",
         "buckets"],
        [[r["case"], str(r["world_size"]), str(r["batch_per_rank"]),
          str(r["threads_per_rank"]), f"{1e3 * r['step_s']:.1f}",
          f"{1e3 * r['compute_s']:.1f}", f"{1e3 * r['allreduce_s']:.2f}",
          f"{1e3 * r['allreduce_alone_s']:.2f}", f"{r['samples_per_s']:.1f}",
          f"{r['samples_per_s'] / base[r['case']]:.2f}" if r["case"] in base else "-",
          f"{r['gradient_bytes'] / 1e6:.2f}", f"{r['ring_bytes_sent_per_rank'] / 1e6:.2f}",
          str(r["buckets"])] for r in runs], markdown=True))
    out: dict[str, Any] = {"machine": m, "runs": runs}
    if args.resnet_times:
        times = []
        for depth in (18, 50):
            t = resnet_time(depth, max(2, args.steps // 3))
            t["tensors"] = len(build(f"resnet{depth}", 224).trainable_parameters())
            times.append(t)
            print(f"resnet{depth} 224x224 training step, batch 2, one process "
                  f"({_threads()} threads): {t['step_s']:.2f} s "
                  f"({t['per_sample_s']:.2f} s/sample), {t['gradient_bytes'] / 1e6:.1f} MB "
                  f"of gradients in {t['tensors']} tensors")
        model = [row for t in times for row in ring_model(t)]
        print(text_table(
            ["model", "Gb/s", "ranks", "compute s", "allreduce ms", "eff.", "eff. overlap",
             "per-tensor allreduce ms", "eff. per-tensor"],
            [[r["model"], str(r["gbit"]), str(r["ranks"]), f"{r['compute_s']:.2f}",
              f"{1e3 * r['allreduce_s']:.1f}", f"{r['efficiency']:.4f}",
              f"{r['efficiency_overlap']:.4f}", f"{1e3 * r['allreduce_per_tensor_s']:.1f}",
              f"{r['efficiency_per_tensor']:.4f}"] for r in model], markdown=True))
        out.update(resnet_times=times, model=model)
    print(f"raw figures: {write_json(ROOT / 'benchmarks' / 'results' / 'distributed.json', out)}")


if __name__ == "__main__":
    main()
