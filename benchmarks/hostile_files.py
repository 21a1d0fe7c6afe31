"""Peak memory and time of loading the hostile files: each must fail fast, in a fresh
process, with peak RSS under 500 MiB.

    python benchmarks/hostile_files.py

Cases: a 137-byte ONNX file whose ConstantOfShape [4e8, 4] (6.4 GB) feeds an Add; an ONNX
input declared [N, 1e5, 1e5, 1e5]; a small artifact that lists an unused 1 GiB member of
zeros (about 1 MB deflated); an artifact whose manifest.json inflates to 1 GiB while its
zip header declares 100 bytes; a Conv whose kernel_shape contradicts its weight. Each runs in
its own process (`graphcnn compile FILE --backend reference` for ONNX, `gc.load` for the
artifact); the child reports its peak RSS (ru_maxrss), next to a baseline child that only
imports graphcnn and onnx.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import hostile_files as hf  # noqa: E402

CHILD = r"""
import json, resource, sys, time
start = time.perf_counter()
import onnx  # noqa: F401  (the baseline imports what the cases import)
import graphcnn as gc
from graphcnn.cli import main
kind, path = sys.argv[1], sys.argv[2]
outcome = "ok"
t0 = time.perf_counter()
try:
    if kind == "onnx":
        main(["compile", path, "--backend", "reference"])
    elif kind == "artifact":
        gc.load(path)
except SystemExit as exc:   # the CLI's one-line error (on stderr)
    outcome = f"exit {exc.code}"
except Exception as exc:
    outcome = f"{type(exc).__name__}: {str(exc)[:160]}"
print(json.dumps({"outcome": outcome, "seconds": time.perf_counter() - t0,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_child(kind: str, path: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.join(HERE, ".."))
    proc = subprocess.run([sys.executable, "-c", CHILD, kind, path], capture_output=True,
                          text=True, env=env, timeout=600)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    if errors:
        result["outcome"] += ": " + errors[-1][:200]
    result["traceback"] = "Traceback" in proc.stderr
    return result


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name, data in [("constant_of_shape.onnx", hf.constant_of_shape_onnx()),
                           ("huge_input.onnx", hf.huge_input_onnx()),
                           ("kernel_shape.onnx", hf.conv_net_onnx([5, 5]))]:
            path = os.path.join(tmp, name)
            with open(path, "wb") as f:
                f.write(data)
            files[name] = ("onnx", path)
        valid = os.path.join(tmp, "valid.gcnn")
        hf.small_artifact(valid)
        unused = os.path.join(tmp, "unused_1gib.gcnn")
        hf.unused_member_artifact(valid, unused)
        files["unused_1gib.gcnn"] = ("artifact", unused)
        bomb = os.path.join(tmp, "zip_bomb_1gib.gcnn")
        hf.zip_bomb_artifact(bomb, inflated=1 << 30)   # declares 100 bytes
        files["zip_bomb_1gib.gcnn"] = ("artifact", bomb)
        base = run_child("none", "")
        print(f"baseline (imports only): peak RSS {base['peak_rss_mib']:.0f} MiB")
        print(f"{'file':24} {'bytes':>9} {'seconds':>8} {'peak RSS':>9}  outcome")
        worst = 0.0
        for name, (kind, path) in files.items():
            r = run_child(kind, path)
            worst = max(worst, r["peak_rss_mib"])
            print(f"{name:24} {os.path.getsize(path):9d} {r['seconds']:8.2f} "
                  f"{r['peak_rss_mib']:7.0f} MiB  {r['outcome']}"
                  f"{'  (TRACEBACK)' if r['traceback'] else ''}")
        print(f"largest peak RSS: {worst:.0f} MiB (limit 500 MiB)")
        return 0 if worst < 500 else 1


if __name__ == "__main__":
    sys.exit(main())
