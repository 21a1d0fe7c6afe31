"""Time a zoo model with graphcnn (and PyTorch, if installed), then profile it: which
kernel runs each layer, and where the time goes.

    python examples/profile_model.py [--model resnet18] [--batch-size 1] [--repeats 20] [--quick]

--quick profiles LeNet-5 with 3 calls. `graphcnn bench` does the same with every peer,
more statistics and JSON/PNG output ([docs/bench.md](../docs/bench.md)).
"""
import argparse
import statistics
import time

import numpy as np

import graphcnn as gc
from graphcnn.bench.profile import profile_kernels, profile_table

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", default="resnet18")
parser.add_argument("--batch-size", type=int, default=1)
parser.add_argument("--repeats", type=int, default=20)
parser.add_argument("--quick", action="store_true", help="lenet5, 3 calls")
args = parser.parse_args()
name, repeats = ("lenet5", 3) if args.quick else (args.model, args.repeats)

model = gc.models.get_model(name)
exe = gc.compile(model, batch_size=args.batch_size)
x = np.random.default_rng(0).random((args.batch_size, *model.inputs[0].type.shape[1:]),
                                    np.float32)


def median_ms(call, x):
    call(x)                                        # warm: caches, thread pools
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(x)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


mine = median_ms(exe, x)
print(f"{name} batch {args.batch_size}: graphcnn {mine:.2f} ms per call "
      f"(compiled in {exe.report()['compile_seconds']:.1f} s)")
try:
    import torch
except ImportError:
    torch = None
if torch is not None and name == "lenet5":          # the same network, written in torch
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5), torch.nn.Tanh(), torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(6, 16, 5), torch.nn.Tanh(), torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(16, 120, 5), torch.nn.Tanh(), torch.nn.Flatten(),
        torch.nn.Linear(120, 84), torch.nn.Tanh(), torch.nn.Linear(84, 10)).eval()
    with torch.no_grad():
        theirs = median_ms(lambda a: net(torch.from_numpy(a)), x)
    print(f"torch {theirs:.2f} ms per call: graphcnn takes {mine / theirs:.3g}x its time")

# which implementation runs each node, and why (the cpu strategy's choice)
for index, op, implementation, why in exe.runner.implementations():
    print(f"  step {index:3d} {op:<12} {implementation:<14} {why}")
# each kernel timed inside whole calls: the slowest five
rows = profile_kernels(exe, {model.inputs[0].name: x}, repeats=max(3, repeats // 4))
print(profile_table(rows, top=5))
