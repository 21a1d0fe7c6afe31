"""Compile ahead of time, then serve: save an executable as an artifact, load it in the
serving process (no Numba compilation there), and answer requests from several threads.

    python examples/serve_aot.py [--model lenet5] [--batch-size 4] [--requests 32]

The artifact holds the optimized graph, the memory plan, the weights and each kernel's
machine code; `gc.load` maps the code in, so the first answer comes without a JIT
warm-up. An executable may be called from any number of threads at once.
"""
import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import graphcnn as gc

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", default="lenet5", help="a zoo name (default lenet5)")
parser.add_argument("--batch-size", type=int, default=4)
parser.add_argument("--requests", type=int, default=32)
args = parser.parse_args()

# build machine: compile once, save (an atomic write; the file fixes the batch size)
model = gc.models.get_model(args.model)
exe = gc.compile(model, batch_size=args.batch_size)
path = f"{args.model}.gcnn"
gc.save(exe, path)

# serving process: load, then call from a pool of threads
start = time.perf_counter()
served = gc.load(path)
print(f"loaded {path} in {time.perf_counter() - start:.3f} s "
      f"({'precompiled' if served.precompiled else 'compiled now'} code)")
shape = (args.batch_size, *model.inputs[0].type.shape[1:])
rng = np.random.default_rng(0)
requests = [rng.random(shape, np.float32) for _ in range(args.requests)]
with ThreadPoolExecutor(4) as pool:               # each call: its own arena and scratch
    answers = list(pool.map(served, requests))
for x, y in zip(requests[:4], answers[:4]):
    assert np.allclose(y, exe(x), rtol=1e-5, atol=1e-6)
print(f"{len(answers)} requests of batch {args.batch_size} answered from 4 threads; "
      f"each concurrent call adds {served.report()['per_call_bytes']:,} bytes")
