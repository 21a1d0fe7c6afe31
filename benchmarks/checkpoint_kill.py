"""Kill a process that saves checkpoints, at random moments, and load after each kill.

    python benchmarks/checkpoint_kill.py [--kills 200] [--max-delay-ms 200] [--seed 0]

A helper process imports graphcnn once and forks a fresh saver for each kill (so a kill
costs a fork, not a Python start-up). The saver loops writing checkpoints of ~2 MiB whose
every array holds the epoch number written in the metadata; after a random delay of 0 to
`--max-delay-ms` ms the saver is SIGKILLed. After each kill the checkpoint must load,
hold one consistent epoch (arrays equal to the metadata's epoch, never two saves mixed),
an epoch no older than the last one seen, and at most one temporary file may be left
(the one the killed save was writing). A final save must leave none. The killed savers'
locks are taken over by the next saver (the kernel drops a dead process's lock).

tests/test_checkpoint_kill.py runs the same harness with 50 kills.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# The helper process: reads one line per kill ("<first epoch>") and forks a saver, which
# prints its pid and saves epochs first, first + 1, ... until it is killed; the helper
# reaps it and prints "reaped".
_HELPER = r"""
import os, sys
import numpy as np
from graphcnn.train.checkpoint import save_checkpoint
path = sys.argv[1]

def saver(first):
    w = np.empty((256, 1024), np.float32)
    m = np.empty((256, 1024), np.float32)
    epoch = first
    while True:
        w.fill(epoch); m.fill(epoch)
        save_checkpoint(path, {"fc.weight": w, "fc.bias": np.full(8, epoch, np.float32)},
                        {"momentum/fc.weight": m},
                        {"epoch": epoch, "history": {"loss": [0.5] * (epoch % 50)}})
        epoch += 1

for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        sys.stdout.write(f"started {os.getpid()}\n")
        sys.stdout.flush()
        try:
            saver(int(line))
        finally:
            os._exit(1)
    os.waitpid(pid, 0)
    sys.stdout.write("reaped\n")
    sys.stdout.flush()
"""


def temp_files(path: Path) -> list[str]:
    pattern = re.compile(re.escape(f".{path.name}.") + r"[a-z0-9_]{8}\.tmp\Z")
    return [n for n in os.listdir(path.parent) if pattern.match(n)]


def check(path: Path) -> int:
    """Load the checkpoint; returns its epoch after checking it is one whole save."""
    import numpy as np

    from graphcnn.train.checkpoint import load_checkpoint
    params, opt, meta = load_checkpoint(path)
    epoch = meta["epoch"]
    for name, a in list(params.items()) + list(opt.items()):
        if not np.all(a == epoch):
            raise AssertionError(f"{name} is not all {epoch}: two saves mixed")
    return int(epoch)


def run_kills(kills: int, directory: Path, seed: int = 0,
              max_delay: float = 0.2) -> dict[str, Any]:
    """The kill loop (module docstring); returns counts. Raises AssertionError on the
    first checkpoint that does not load or is inconsistent."""
    import numpy as np

    from graphcnn.train.checkpoint import checkpoint_file, save_checkpoint
    rng = random.Random(seed)
    path = checkpoint_file(directory / "run")
    save_checkpoint(path, {"fc.weight": np.zeros((256, 1024), np.float32),
                           "fc.bias": np.zeros(8, np.float32)},
                    {"momentum/fc.weight": np.zeros((256, 1024), np.float32)},
                    {"epoch": 0, "history": {"loss": []}})
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1")
    helper = subprocess.Popen([sys.executable, "-c", _HELPER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert helper.stdin is not None and helper.stdout is not None
    loaded, last, max_temps, advanced = 0, 0, 0, 0
    start = time.perf_counter()
    try:
        for k in range(kills):
            helper.stdin.write(f"{(k + 1) * 1_000_000}\n")
            helper.stdin.flush()
            line = helper.stdout.readline()
            if not line.startswith("started "):
                raise AssertionError(f"saver did not start: {line!r}")
            time.sleep(rng.uniform(0.0, max_delay))
            os.kill(int(line.split()[1]), signal.SIGKILL)
            if helper.stdout.readline().strip() != "reaped":
                raise AssertionError("the helper lost its saver")
            epoch = check(path)   # raises if the checkpoint does not load
            loaded += 1
            if epoch < last:
                raise AssertionError(f"checkpoint went back from epoch {last} to {epoch}")
            advanced += epoch != last
            last = epoch
            temps = len(temp_files(path))
            max_temps = max(max_temps, temps)
            if temps > 1:
                raise AssertionError(f"{temps} temporary files after kill {k + 1}")
    finally:
        helper.stdin.close()
        helper.wait(timeout=30)
    seconds = time.perf_counter() - start
    save_checkpoint(path, {"fc.weight": np.zeros((256, 1024), np.float32),
                           "fc.bias": np.zeros(8, np.float32)},
                    {"momentum/fc.weight": np.zeros((256, 1024), np.float32)},
                    {"epoch": last + 1, "history": {"loss": []}})
    after = len(temp_files(path))
    if after:
        raise AssertionError(f"{after} temporary files after the final save")
    return {"kills": kills, "loadable": loaded, "kills_with_a_new_checkpoint": advanced,
            "max_temp_files_after_a_kill": max_temps, "temp_files_after_next_save": after,
            "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--max-delay-ms", type=float, default=200.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as d:
        result = run_kills(args.kills, Path(d), args.seed, args.max_delay_ms / 1000)
    print(json.dumps(result, indent=1))
    print(f"{result['kills']} kills, {result['loadable']} checkpoints loadable after them "
          f"({result['kills_with_a_new_checkpoint']} had committed a newer save)")


if __name__ == "__main__":
    main()
