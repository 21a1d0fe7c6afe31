"""resize2d on the cpu backend against PyTorch's interpolate (same threads), x2 upsampling
at U-Net decoder sizes: the forward (a compiled one-op model) and the adjoint
(resize2d_grad, against PyTorch's forward + backward). Best of a few runs; needs torch.

    python benchmarks/resample.py [--repeat 7] [--threads 2]
"""
from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Callable

import numpy as np

import graphcnn as gc
from graphcnn.ir.graph import Graph
from graphcnn.runtime.executable import make_runner

if TYPE_CHECKING:
    import torch

SHAPES = [(8, 64, 32, 32), (8, 32, 64, 64)]
MODES = [("nearest", {}), ("bilinear", {"mode": "bilinear"}),
         ("bilinear, corners", {"mode": "bilinear", "align_corners": True})]


def best(repeat: int, fn: Callable[..., object], *args: object, **kwargs: object) -> float:
    fn(*args, **kwargs)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return min(times)


def torch_step(x: "torch.Tensor", dy: "torch.Tensor", corners: bool) -> None:
    import torch.nn.functional as F
    x.grad = None
    F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=corners).backward(dy)


def main() -> None:
    import torch
    import torch.nn.functional as F
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gc.set_num_threads(args.threads)
    print(f"{'shape':>18} {'mode':>18} {'graphcnn ms':>12} {'torch ms':>9} {'ratio':>6}")
    for shape in SHAPES:
        X = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        x = gc.Input(shape[1:])
        for name, kw in MODES:
            exe = gc.compile(gc.Model(inputs=x, outputs=gc.interpolate(x, scale_factor=2, **kw)),
                             batch_size=shape[0], backend="cpu")
            ours = best(args.repeat, exe, X)
            theirs = best(args.repeat, F.interpolate, torch.from_numpy(X), scale_factor=2, **kw)
            print(f"{str(shape):>18} {name:>18} {ours * 1e3:>12.2f} {theirs * 1e3:>9.2f} "
                  f"{ours / theirs:>6.2f}")
        for corners in (False, True):
            dy = np.random.default_rng(1).standard_normal(
                shape[:2] + (2 * shape[2], 2 * shape[3])).astype(np.float32)
            g = Graph("grad")
            v = g.input("dy", dy.shape)
            g.set_outputs([g.add("resize2d_grad", [v], size=dy.shape[2:], input_hw=shape[2:],
                                 mode="bilinear", align_corners=corners)])
            runner = make_runner(g, "cpu")
            ours = best(args.repeat, runner.run, {v.id: dy})
            theirs = best(args.repeat, torch_step, torch.zeros(shape, requires_grad=True),
                          torch.from_numpy(dy), corners)
            print(f"{str(shape):>18} {'grad, corners' if corners else 'grad':>18} "
                  f"{ours * 1e3:>12.2f} {theirs * 1e3:>9.2f} {ours / theirs:>6.2f}"
                  f"  (torch: forward + backward)")


if __name__ == "__main__":
    main()
