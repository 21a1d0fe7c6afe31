"""Fuzz graphcnn's file readers for a while: mutated ONNX files and artifacts (byte flips,
truncations, protobuf and manifest fields set to hostile values, members removed, renamed,
replaced or duplicated), each loaded under a time bound and tracemalloc. Prints the cases
tried and the outcomes by kind: every failure must be a graphcnn error (OnnxImportError,
ArtifactError, GraphBuildError and their subclasses such as LimitError); anything else
(another exception, a hang, an allocation over 100 MiB) is listed as a contract failure.

    python benchmarks/fuzz_files.py --seconds 300 [--seed 0] [--kind onnx|artifact|both]

The bounded version runs in CI: tests/test_fuzz_files.py.
"""
from __future__ import annotations

import argparse
import collections
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
os.environ.setdefault("GRAPHCNN_AUTOTUNE", "0")

import file_mutations as fm  # noqa: E402
import hostile_files as hf  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kind", choices=("onnx", "artifact", "both"), default="both")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        artifact = os.path.join(tmp, "small.gcnn")
        hf.small_artifact(artifact)
        kinds = fm.base_files(artifact)
    names = ["onnx", "artifact"] if args.kind == "both" else [args.kind]
    rng = random.Random(args.seed)
    outcomes: dict[str, collections.Counter[str]] = {k: collections.Counter() for k in names}
    failures: list[str] = []
    start = time.perf_counter()
    tried = 0
    while time.perf_counter() - start < args.seconds:
        kind = names[tried % len(names)]
        bases, mutate, load = kinds[kind]
        case_seed = rng.randrange(2**32)
        data = mutate(random.Random(case_seed), rng.choice(bases))
        tried += 1
        try:
            outcomes[kind][fm.run_case(load, data)] += 1
        except fm.Failure as exc:
            outcomes[kind]["CONTRACT FAILURE"] += 1
            failures.append(f"{kind} seed {case_seed}: {exc}")
    elapsed = time.perf_counter() - start
    print(f"{tried} cases in {elapsed:.0f} s (seed {args.seed})")
    for kind in names:
        total = sum(outcomes[kind].values())
        print(f"{kind}: {total} cases")
        for outcome, count in outcomes[kind].most_common():
            print(f"  {outcome:28} {count}")
    print(f"contract failures: {len(failures)}")
    for line in failures[:50]:
        print("  " + line)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
