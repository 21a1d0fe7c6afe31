"""A model's latency and the cost of moving cache lines between the cores, side by side
over time: the evidence that the host's slow and fast phases are the cross-core cost.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/cross_core.py \
        [--model densenet121] [--batch-size 1] [--seconds 90] [--calls 5] [--quick]

One process, one executable: in turns, the median of `--calls` calls of the model, then
the probe of graphcnn/bench/cross_core.py (a 768 KB write over lines the other core read,
against one over the writer's own), for `--seconds`. A line per turn, then each phase's
median latency (--quick: LeNet-5 for 2 seconds, to check the script runs). On the 2-core EPYC of 2026-12-05 (commit bfc9c13) DenseNet-121 at batch
1 ran at 34.7-35.6 ms while the probe said 1.8x (81 us against 44) for 82 s, and at
49.1-50.0 ms from the second the probe said 6.4x (297 us).

Writes benchmarks/results/cross_core.json (not RESULTS.md); --quick, ./cross_core.json.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import graphcnn as gc  # noqa: E402
from graphcnn.bench.common import machine, machine_line, write_json  # noqa: E402
from graphcnn.bench.cross_core import cross_core_cost, phase_name  # noqa: E402
from graphcnn.bench.model_bench import make_data, make_model  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="densenet121")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--json", help="default: benchmarks/results/cross_core.json, or "
                        "cross_core.json in the current folder with --quick")
    parser.add_argument("--quick", action="store_true", help="lenet5 for 2 seconds")
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.seconds = "lenet5", 2.0
    if args.json is None:
        args.json = "cross_core.json" if args.quick else str(
            ROOT / "benchmarks/results/cross_core.json")
    print(f"machine: {machine_line(machine())}")
    model = make_model(args.model, {})
    x, _ = make_data(model, args.batch_size)
    exe = gc.compile(model, batch_size=args.batch_size)
    exe(x)
    turns = []
    start = time.time()
    while time.time() - start < args.seconds:
        times = []
        for _ in range(max(1, args.calls)):
            began = time.perf_counter()
            exe(x)
            times.append(time.perf_counter() - began)
        probe = cross_core_cost()
        turn = {"t_s": round(time.time() - start, 2),
                "model_ms": statistics.median(times) * 1e3, "probe": probe}
        turns.append(turn)
        ratio = f"{probe['ratio']:.2f}x ({probe['other_us']:.0f} against " \
                f"{probe['own_us']:.0f} us)" if probe else "one thread"
        print(f"{turn['t_s']:6.1f} s  {args.model} b{args.batch_size} "
              f"{turn['model_ms']:7.2f} ms   cross-core write {ratio}", flush=True)
    by_phase: dict[str, list[float]] = {}
    for turn in turns:
        by_phase.setdefault(phase_name(turn["probe"]), []).append(turn["model_ms"])
    for phase, values in sorted(by_phase.items()):
        print(f"{phase} phase: {len(values)} turns, median {statistics.median(values):.2f} ms")
    write_json(args.json, {"argv": sys.argv[1:], "machine": machine(), "turns": turns})
    return 0


if __name__ == "__main__":
    sys.exit(main())
