"""Two checkouts of graphcnn (before and after a change) timed on the same models in
alternating fresh processes, with ONNX Runtime in between as a control: on a shared host
whose speed moves by 1.5x within minutes, only figures taken in turns compare.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/ab_checkouts.py \
        OLD_CHECKOUT NEW_CHECKOUT --models densenet121,resnet18 [--batch-size 1] \
        [--rounds 3] [--repeats 10] [--training] [--no-control] [--quick]

e.g. `git worktree add /tmp/old HEAD~1` and `git worktree add /tmp/new HEAD`. Each round
times, in turns and each in a process of its own, the old checkout, the new one and ONNX
Runtime (with --training, training steps and PyTorch's as the control) in between
(each process imports graphcnn from its checkout: PYTHONPATH). The checkouts get
one copy each of this machine's autotuning cache, so both start from the same choices.
Prints a line per round, then per model the medians over the rounds and each over the
control's. --quick: LeNet-5, one round of 3 calls, no control (to check the script runs).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from graphcnn.backends.cpu.autotune import cache_path  # noqa: E402
from graphcnn.bench.isolate import run_worker  # noqa: E402

LABELS = {"onnxruntime": "ONNX Runtime", "torch": "PyTorch"}


def time_in(checkout: str | None, spec: dict, tune_cache: str | None) -> float:
    """The median ms of one fresh process timing `spec` (graphcnn from `checkout`, or the
    peer named in spec when checkout is None)."""
    saved = dict(os.environ)
    try:
        if checkout is not None:
            os.environ["PYTHONPATH"] = checkout
        if tune_cache is not None:
            os.environ["GRAPHCNN_AUTOTUNE_CACHE"] = tune_cache
        # run in the checkout: `python -c` puts its working folder first on the import
        # path, so a child started from another checkout would import that one instead
        return float(run_worker(spec, cwd=checkout)["median_ms"])
    finally:
        os.environ.clear()
        os.environ.update(saved)


def imported_graphcnn(checkout: str) -> Path:
    """The graphcnn package a worker for `checkout` imports (as time_in starts it)."""
    done = subprocess.run([sys.executable, "-c", "import graphcnn; print(graphcnn.__file__)"],
                          cwd=checkout, env=dict(os.environ, PYTHONPATH=checkout),
                          capture_output=True, text=True, check=True)
    return Path(done.stdout.strip().splitlines()[-1]).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--models", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--training", action="store_true",
                        help="time training steps; PyTorch is the control")
    parser.add_argument("--no-control", action="store_true", help="no peer as control")
    parser.add_argument("--quick", action="store_true", help="lenet5, one round of 3 calls")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.rounds, args.repeats, args.no_control = "lenet5", 1, 3, True
    for path in (args.old, args.new):
        if not (Path(path) / "graphcnn" / "__init__.py").is_file():
            parser.error(f"{path} is not a graphcnn checkout (no graphcnn/__init__.py)")
        package = imported_graphcnn(path)
        if package != (Path(path) / "graphcnn").resolve():
            parser.error(f"a worker for {path} imports graphcnn from {package}")
    scratch = Path(tempfile.mkdtemp(prefix="graphcnn-ab-"))
    caches = {}
    for side in ("old", "new"):   # the same starting choices for both
        caches[side] = str(scratch / f"autotune-{side}.json")
        if Path(cache_path()).is_file():
            shutil.copy(cache_path(), caches[side])
    systems = {"old": args.old, "new": args.new}
    control = "torch" if args.training else "onnxruntime"
    if not args.no_control:
        systems[control] = ""
    try:
        for model in args.models.split(","):
            times: dict[str, list[float]] = {s: [] for s in systems}
            for round_ in range(args.rounds):
                for system, checkout in systems.items():
                    spec = {"model": model, "model_kwargs": {}, "batch": args.batch_size,
                            "training": args.training, "opt_level": 2, "threads": 2,
                            "max_batch": args.batch_size, "repeats": args.repeats,
                            "warmup": 2, "system": "graphcnn" if checkout else system}
                    times[system].append(time_in(checkout or None, spec, caches.get(system)))
                print(f"{model} b{args.batch_size} round {round_ + 1}: " + ", ".join(
                    f"{s} {t[-1]:.2f} ms" for s, t in times.items()), flush=True)
            middle = {s: statistics.median(t) for s, t in times.items()}
            line = ", ".join(f"{s} {m:.2f} ms" for s, m in middle.items())
            if control in middle:
                line += " (" + ", ".join(f"{s} {middle[s] / middle[control]:.2f}x"
                                         for s in ("old", "new")) + f" {LABELS[control]}'s)"
            print(f"{model} b{args.batch_size} medians over {args.rounds} rounds: {line}",
                  flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
