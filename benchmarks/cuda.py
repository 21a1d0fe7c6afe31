"""ResNet-18 on the GPU: graphcnn's cuda backend against PyTorch CUDA, in the same run.

    python benchmarks/cuda.py [--repeats 20] [--warmup 3]

Measures inference at batch 1 and 64 (compile(frozen=True), device arrays in and out: the
model's own time, not PCIe) and one training step at batch 64 (forward, loss, backward,
running statistics and the SGD update, all on the device: DeviceTraining), against
torchvision's resnet18 in float32 (model.eval() / train(), torch.cuda.synchronize around
each timing; cuDNN and TF32 at PyTorch's defaults, noted in the output). PyTorch is
optional: without it graphcnn's times are printed alone. Without a GPU it stops with a
clear message. The figures go to benchmarks/RESULTS.md by hand, with the GPU named.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any, Callable

import numpy as np


def _timed(fn: Callable[[], Any], sync: Callable[[], None], warmup: int, repeats: int
           ) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args(argv)

    import graphcnn as gc
    from graphcnn.backends.cuda.device import CudaUnavailableError, cuda, implementation
    try:
        cu = cuda()
    except CudaUnavailableError as err:
        print(f"benchmarks/cuda.py needs a CUDA GPU: {err}", file=sys.stderr)
        return 2
    from graphcnn.backends.cuda.optim import DeviceTraining
    from graphcnn.backends.cuda.runner import run_device

    device = cu.get_current_device()
    print(f"GPU: {device.name.decode() if isinstance(device.name, bytes) else device.name}; "
          f"numba.cuda: {implementation()}")
    sync = cu.synchronize
    rng = np.random.default_rng(0)
    model = gc.models.resnet18(num_classes=1000)
    rows: list[tuple[str, float, float | None]] = []
    torch = _torch()

    for batch in (1, 64):
        x = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
        exe = gc.compile(model, batch_size=batch, backend="cuda")
        name = exe.input_names[0]
        xd = cu.to_device(x)
        ours = _timed(lambda: run_device(exe, {name: xd}, copy=False), sync, args.warmup,
                      args.repeats)
        theirs = None
        if torch is not None:
            theirs = _torch_inference(torch, model, x, args)
        rows.append((f"inference batch {batch}", ours, theirs))

    batch = 64
    x = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
    y = rng.integers(0, 1000, batch)
    step = gc.value_and_grad(model, batch_size=batch, backend="cuda")
    train = DeviceTraining(step, gc.optim.SGD(lr=0.01, momentum=0.9, weight_decay=1e-4))
    xd, yd = cu.to_device(x), cu.to_device(y.astype(np.int64))
    ours = _timed(lambda: train(xd, yd), sync, args.warmup, args.repeats)
    theirs = _torch_training(torch, model, x, y, args) if torch is not None else None
    rows.append((f"training step batch {batch}", ours, theirs))

    print(f"{'':28s} {'graphcnn ms':>12s} {'torch ms':>10s} {'ratio':>7s}")
    for label, ours, theirs in rows:
        ratio = f"{ours / theirs:7.2f}" if theirs else "      -"
        t = f"{theirs * 1e3:10.2f}" if theirs else "         -"
        print(f"{label:28s} {ours * 1e3:12.2f} {t} {ratio}")
    if torch is None:
        print("PyTorch is not installed: no comparison (pip install torch torchvision)")
    return 0


def _torch() -> Any:
    try:
        import torch
        import torchvision  # noqa: F401
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _torch_model(torch: Any, model: Any) -> Any:
    import torchvision
    net = torchvision.models.resnet18(num_classes=1000)
    net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in
                         model.parameters().items()}, strict=False)
    print(f"torch {torch.__version__}: cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
          f"matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}")
    return net.cuda()


def _torch_inference(torch: Any, model: Any, x: np.ndarray, args: Any) -> float:
    net = _torch_model(torch, model).eval()
    xt = torch.from_numpy(x).cuda()
    with torch.no_grad():
        return _timed(lambda: net(xt), torch.cuda.synchronize, args.warmup, args.repeats)


def _torch_training(torch: Any, model: Any, x: np.ndarray, y: np.ndarray, args: Any) -> float:
    net = _torch_model(torch, model).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    xt, yt = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(net(xt), yt).backward()
        opt.step()
    return _timed(step, torch.cuda.synchronize, args.warmup, args.repeats)


if __name__ == "__main__":
    sys.exit(main())
