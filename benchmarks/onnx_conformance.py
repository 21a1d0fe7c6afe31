"""ONNX's operator conformance cases on graphcnn: how many pass, how many are refused and
why, and that none gives a wrong number (graphcnn/onnx/conformance.py).

    .venv/bin/python benchmarks/onnx_conformance.py [--backend cpu] [--record benchmarks/RESULTS.md]

The cases: the float32 node cases of the ops a CNN uses, shipped in the installed onnx
wheel (`onnx.backend.test.case.node.collect_testcases()`), every graph input after the
first made an initializer, 3-D, attention and training-mode cases left out. Prints the
counts, the refusals grouped by op, and writes benchmarks/results/onnx_conformance.json;
with --record, keeps the figures in that Markdown file's "onnx conformance" section.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import onnx  # noqa: E402

from graphcnn.bench.record import record_section  # noqa: E402
from graphcnn.onnx.conformance import DELIBERATE_REFUSALS, collect_cases, run_cases  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--record", default=None, metavar="FILE")
    args = parser.parse_args()
    start = time.perf_counter()
    results = run_cases(collect_cases(), backend=args.backend)
    seconds = time.perf_counter() - start
    counts = collections.Counter(r.outcome for r in results)
    total = len(results)
    lines = [f"onnx {onnx.__version__}, backend {args.backend}: {total} cases; "
             f"passed {counts['passed']} ({100 * counts['passed'] / total:.1f}%), refused "
             f"{counts['refused']}, failed (an error that is not a clear refusal, or a wrong "
             f"number) {counts['failed']}; {seconds:.0f} s"]
    for r in results:
        if r.outcome != "passed":
            reason = DELIBERATE_REFUSALS.get(r.name, "not in the list of deliberate refusals")
            lines.append(f"- {r.outcome} {r.name} ({r.op}): {reason}")
    print("\n".join(lines))
    out = ROOT / "benchmarks" / "results" / "onnx_conformance.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"onnx": onnx.__version__, "backend": args.backend,
                               "counts": dict(counts), "total": total,
                               "results": [r.__dict__ for r in results]}, indent=1))
    if args.record:
        body = "\n".join([f"Last run: `.venv/bin/python benchmarks/onnx_conformance.py` on "
                          f"{time.strftime('%Y-%m-%d')}.", "", *lines])
        record_section(args.record, "onnx conformance", body)


if __name__ == "__main__":
    main()
