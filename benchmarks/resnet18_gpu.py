"""ResNet-18 on the GPU: graphcnn's cuda backend against PyTorch CUDA, in the same run.

    python benchmarks/resnet18_gpu.py [--repeats 20] [--warmup 3] [--image-size 224]
                              [--batches 1,64] [--train-batch 64] [--profile]

First the numbers: the inference logits (batch 1) and one training step's loss and
gradients (the training batch) against PyTorch in strict float32 (TF32 off), with the
same weights (graphcnn.bench.torch_models, loaded by name). Then the times: inference
(compile(frozen=True), device arrays in and out: the model's own time, not PCIe) and one
training step (forward, loss, backward, running statistics and the SGD update, all on the
device: DeviceTraining), against PyTorch with TF32 at its defaults (cuDNN convolutions
in TF32) and with TF32 off, which is what graphcnn computes. Medians over --repeats, each
timing closed by a device synchronize.

PyTorch is optional: without it graphcnn's times are printed alone. Without a GPU it stops
with a clear message, unless NUMBA_ENABLE_CUDASIM=1 is set: then the script runs on the
simulator, which checks the script and not the speed, at tiny sizes only:
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/resnet18_gpu.py --image-size 16 --batches 1 \\
        --train-batch 2 --repeats 1 --warmup 0 --torch-device cpu --width 4
(--torch-device cpu puts the PyTorch peer on the CPU, to run its code paths there;
--width narrows every layer, ResNet-18's being far too slow for the simulator. That run
takes about 20 minutes. At 16 x 16 and batch 2, layer4's batch norms normalize 2 values
per channel, so its gradients are ill-conditioned: they differ from PyTorch's by up to
15% on the cpu backend too; at 32 x 32 and batch 4 the cpu backend matches to 1e-3.)
The figures go to benchmarks/RESULTS.md by hand, with the GPU named.
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


def _batches(text: str) -> list[int]:
    return [int(b) for b in text.split(",") if b]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batches", type=_batches, default=[1, 64],
                        help="inference batch sizes, comma-separated")
    parser.add_argument("--train-batch", type=int, default=64)
    parser.add_argument("--width", type=int, default=64,
                        help="ResNet-18's first width (64; smaller only to check the script)")
    parser.add_argument("--profile", action="store_true",
                        help="after the times, each op's share of graphcnn's device time "
                             "(inference at the largest batch, and the training step)")
    parser.add_argument("--torch-device", default="cuda", choices=("cuda", "cpu"),
                        help="where the PyTorch peer runs (cpu: to check this script on "
                             "the simulator)")
    args = parser.parse_args(argv)

    import graphcnn as gc
    from graphcnn.backends.cuda.device import (CudaUnavailableError, cuda, implementation,
                                              is_simulator)
    try:
        cu = cuda()
    except CudaUnavailableError as err:
        print(f"benchmarks/resnet18_gpu.py needs a CUDA GPU: {err}", file=sys.stderr)
        return 2
    from graphcnn.backends.cuda.optim import DeviceTraining
    from graphcnn.backends.cuda.runner import run_device

    if is_simulator():
        name = "none: Numba's CUDA simulator (this run checks the script, not the speed)"
    else:
        name = cu.get_current_device().name
        name = name.decode() if isinstance(name, bytes) else name
    print(f"GPU: {name}; numba.cuda: {implementation()}; ResNet-18 width {args.width}, "
          f"images {args.image_size} x {args.image_size}", flush=True)
    sync = cu.synchronize
    rng = np.random.default_rng(0)
    size = args.image_size
    model = gc.models.resnet18(num_classes=1000, width=args.width, input_size=size)
    torch = _torch(args.torch_device)
    net = _torch_model(torch, model, args) if torch is not None else None
    executables: dict[int, Any] = {}

    def compiled(batch: int) -> Any:
        if batch not in executables:
            executables[batch] = gc.compile(model, batch_size=batch, backend="cuda")
        return executables[batch]

    # ---- the numbers first ----
    x1 = rng.standard_normal((args.batches[0], 3, size, size)).astype(np.float32)
    logits = compiled(args.batches[0])(x1)
    xt = rng.standard_normal((args.train_batch, 3, size, size)).astype(np.float32)
    yt = rng.integers(0, 1000, args.train_batch)
    step = gc.value_and_grad(model, batch_size=args.train_batch, backend="cuda")
    loss, grads = step(xt, yt)
    if net is not None:
        _check_against_torch(torch, net, x1, logits, xt, yt, loss, grads)
    else:
        print(f"no PyTorch: logits not cross-checked; training loss {loss:.6f}")

    # ---- then the times ----
    rows: list[tuple[str, float, float | None, float | None]] = []
    for batch in args.batches:
        x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
        exe = compiled(batch)
        input_name = exe.input_names[0]
        xd = cu.to_device(x)
        ours = _timed(lambda: run_device(exe, {input_name: xd}, copy=False), sync,
                      args.warmup, args.repeats)
        peers = [_torch_inference(torch, net, x, args, tf32) for tf32 in (True, False)] \
            if net is not None else [None, None]
        rows.append((f"inference batch {batch}", ours, *peers))

    batch = args.train_batch
    x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    y = rng.integers(0, 1000, batch)
    train = DeviceTraining(step, gc.optim.SGD(lr=0.01, momentum=0.9, weight_decay=1e-4))
    xd, yd = cu.to_device(x), cu.to_device(y.astype(np.int64))
    ours = _timed(lambda: train(xd, yd), sync, args.warmup, args.repeats)
    peers = [_torch_training(torch, net, x, y, args, tf32) for tf32 in (True, False)] \
        if net is not None else [None, None]
    rows.append((f"training step batch {batch}", ours, *peers))

    print(f"{'':26s} {'graphcnn ms':>11s} {'torch ms':>9s} {'ratio':>6s} "
          f"{'torch fp32':>10s} {'ratio':>6s}   (torch: TF32 at its defaults / off)")
    for label, ours, tf32, fp32 in rows:
        line = f"{label:26s} {ours * 1e3:11.2f}"
        for theirs, width in ((tf32, 9), (fp32, 10)):
            line += f" {theirs * 1e3:{width}.2f} {ours / theirs:6.2f}" if theirs else \
                f" {'-':>{width}s} {'-':>6s}"
        print(line)
    if torch is None:
        print("PyTorch with CUDA is not available here: no comparison")
    if args.profile:
        _profile(f"inference batch {max(args.batches)}", compiled(max(args.batches)).runner,
                 sync, args.repeats)
        _profile(f"training step batch {batch}", step.executable.runner, sync, args.repeats)
    return 0


def _profile(label: str, runner: Any, sync: Callable[[], None], repeats: int) -> None:
    """Each step's device time, its launches replayed alone with a synchronize on each
    side (median over repeats), summed by op: where the model's time goes. The launches
    read whatever the arena holds from the last call, which is what a call reads."""
    by_op: dict[str, list[float]] = {}
    launches = 0
    for s in runner.steps:
        if not s.kernel:
            continue
        launches += len(s.kernel)
        times = []
        for _ in range(max(repeats, 3)):
            sync()
            start = time.perf_counter()
            for launch in s.kernel:
                launch()
            sync()
            times.append(time.perf_counter() - start)
        by_op.setdefault(s.op, []).append(statistics.median(times))
    total = sum(sum(t) for t in by_op.values())
    print(f"profile, {label}: {launches} launches, {total * 1e3:.2f} ms summed over steps "
          f"timed one at a time (each includes a launch and a synchronize)")
    for op, times in sorted(by_op.items(), key=lambda kv: -sum(kv[1]))[:12]:
        print(f"    {op:28s} {len(times):3d} steps {sum(times) * 1e3:8.2f} ms "
              f"{100 * sum(times) / total:5.1f}%")


def _torch(device: str) -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch if device == "cpu" or torch.cuda.is_available() else None


def _sync(torch: Any) -> Callable[[], None]:
    return torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)


def _torch_model(torch: Any, model: Any, args: Any) -> Any:
    from graphcnn.bench.torch_models import build, load_graphcnn_weights
    print(f"torch {torch.__version__}: defaults cudnn.allow_tf32="
          f"{torch.backends.cudnn.allow_tf32}, matmul.allow_tf32="
          f"{torch.backends.cuda.matmul.allow_tf32}")
    net = build("resnet18", num_classes=1000, width=args.width)
    return load_graphcnn_weights(net, model).to(args.torch_device)


def _on(torch: Any, net: Any, array: np.ndarray) -> Any:
    """A tensor of `array` on the device where `net` is."""
    return torch.from_numpy(array).to(next(net.parameters()).device)


class _Tf32:
    """TF32 on (as at PyTorch's defaults for cuDNN) or off (strict float32) for a block."""

    def __init__(self, torch: Any, on: bool) -> None:
        self.torch, self.on = torch, on

    def __enter__(self) -> None:
        b = self.torch.backends
        self.saved = (b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32)
        b.cudnn.allow_tf32 = self.on
        b.cuda.matmul.allow_tf32 = self.on and self.saved[1]

    def __exit__(self, *exc: Any) -> None:
        b = self.torch.backends
        b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32 = self.saved


def _check_against_torch(torch: Any, net: Any, x1: np.ndarray, logits: np.ndarray,
                         xt: np.ndarray, yt: np.ndarray, loss: float,
                         grads: dict[str, np.ndarray]) -> None:
    """Print how far graphcnn's GPU numbers are from PyTorch's (float32 and float64)."""
    with _Tf32(torch, on=False):
        net.eval()
        with torch.no_grad():
            want = net(_on(torch, net, x1)).cpu().numpy()
        net.train()
        net.zero_grad(set_to_none=True)
        out = net(_on(torch, net, xt))
        torch_loss = torch.nn.functional.cross_entropy(out, _on(torch, net, yt))
        torch_loss.backward()
    scale = float(np.abs(want).max())
    print(f"logits (batch {len(x1)}): max |graphcnn - torch fp32| = "
          f"{float(np.abs(logits - want).max()):.3g} (logits up to {scale:.3g})")
    # float32 sums over a batch's pixels cancel: a gradient can be far from torch's own
    # float32 one while both are as close to the exact (float64) gradient. So both are
    # measured against PyTorch in float64, with the same weights and batch.
    exact = _float64_gradients(torch, net, xt, yt)
    ours_err: list[tuple[float, str]] = []
    theirs_err: list[tuple[float, str]] = []
    for key, param in net.named_parameters():
        g64 = exact[key]
        scale = max(float(np.abs(g64).max()), 1e-30)
        ours_err.append((float(np.abs(grads[key] - g64).max()) / scale, key))
        theirs_err.append((float(np.abs(param.grad.double().cpu().numpy() - g64).max())
                           / scale, key))
    print(f"training batch {len(xt)}: loss {loss:.6f} vs torch fp32 "
          f"{float(torch_loss.detach()):.6f}; gradients against torch float64, worst "
          f"max-relative difference: graphcnn {max(ours_err)[0]:.3g} ({max(ours_err)[1]}), "
          f"torch fp32 {max(theirs_err)[0]:.3g} ({max(theirs_err)[1]})", flush=True)
    for (ours, key), (theirs, _) in sorted(zip(ours_err, theirs_err), reverse=True)[:3]:
        print(f"    {key}: graphcnn {ours:.3g}, torch fp32 {theirs:.3g}")
    net.zero_grad(set_to_none=True)


def _float64_gradients(torch: Any, net: Any, xt: np.ndarray, yt: np.ndarray
                       ) -> dict[str, np.ndarray]:
    import copy
    exact = copy.deepcopy(net).double().train()
    exact.zero_grad(set_to_none=True)
    out = exact(_on(torch, exact, xt.astype(np.float64)))
    torch.nn.functional.cross_entropy(out, _on(torch, exact, yt)).backward()
    return {key: param.grad.cpu().numpy() for key, param in exact.named_parameters()}


def _torch_inference(torch: Any, net: Any, x: np.ndarray, args: Any, tf32: bool) -> float:
    net.eval()
    xt = _on(torch, net, x)
    with _Tf32(torch, tf32), torch.no_grad():
        return _timed(lambda: net(xt), _sync(torch), args.warmup, args.repeats)


def _torch_training(torch: Any, net: Any, x: np.ndarray, y: np.ndarray, args: Any,
                    tf32: bool) -> float:
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    xt, yt = _on(torch, net, x), _on(torch, net, y)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(net(xt), yt).backward()
        opt.step()
    with _Tf32(torch, tf32):
        return _timed(step, _sync(torch), args.warmup, args.repeats)


if __name__ == "__main__":
    sys.exit(main())
