"""MobileNetV2's depthwise 3x3 layers in NCHW (what a training step runs; inference runs
them blocked), alone, in one process: the forward kernel, the weight gradient and the
input gradient (backends/cpu/kernels/depthwise.py, depthwise_grad.py), each the median of
`--repeats` calls, beside the memory's floor for a kernel that reads the layer's input
and writes its output (a parallel pass reading the one, then one writing the other), and
the path each plane
takes (rolling, flat or the phase layout). Each result is checked against the generic
direct kernels.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/depthwise.py \
        [--batch-size 16] [--repeats 9] [--quick]

To compare two checkouts, run it from each with PYTHONPATH=<checkout>, in turns. --quick:
two small layers, 3 calls (to check the script runs).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import numba
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:   # a PYTHONPATH checkout comes first
    sys.path.append(str(ROOT))

from graphcnn.backends.cpu.kernels import conv, depthwise, depthwise_grad  # noqa: E402
from graphcnn.backends.cpu.registry import launch  # noqa: E402
from graphcnn.bench.common import measure  # noqa: E402

# (channels, input size, stride): MobileNetV2's depthwise layers, padding 1
LAYERS = ((32, 112, 1), (96, 112, 2), (144, 56, 1), (144, 56, 2), (192, 28, 1),
          (192, 28, 2), (384, 14, 1), (576, 14, 1), (576, 14, 2), (960, 7, 1))
QUICK = ((4, 50, 1), (4, 8, 1))


@numba.njit(parallel=True, fastmath=True)
def _read(src):
    total = np.float32(0)
    for i in numba.prange(src.size):
        total += src[i]
    return total


@numba.njit(parallel=True)
def _write(dst):
    for i in numba.prange(dst.size):
        dst[i] = 1.0


def median_ms(run: Callable[[], None], repeats: int) -> float:
    return float(measure(run, repeats, warmup=2)["median_ms"])


def path(h: int, stride: int) -> str:
    out = (h - 1) // stride + 1
    if out >= depthwise.ROLLING_FROM:
        return "rolling"
    flat = depthwise.runs_flat((1, 1, h, h), (1, 1, out, out), stride, stride, 1, 1)
    return "flat" if flat else "phases"


def compare(batch: int, layer: tuple[int, int, int], repeats: int) -> dict[str, float]:
    """ms of each kernel and the floor; the largest difference from the direct kernels,
    relative to the largest value."""
    c, h, s = layer
    rng = np.random.default_rng(c + h)
    attrs = {"stride": (s, s), "padding": (1, 1, 1, 1), "dilation": (1, 1), "groups": c}
    oh = (h - 1) // s + 1
    x = rng.standard_normal((batch, c, h, h), dtype=np.float32)
    w = rng.standard_normal((c, 1, 3, 3), dtype=np.float32)
    dy = rng.standard_normal((batch, c, oh, oh), dtype=np.float32)
    out, dx, dw = np.empty_like(dy), np.empty_like(x), np.empty_like(w)
    no_bias = conv.NO_BIAS[np.dtype(np.float32)]
    input_grad = (depthwise_grad.depthwise3x3_input_grad if s == 1
                  else depthwise_grad.depthwise3x3_s2_input_grad)
    ms = {"forward": median_ms(lambda: depthwise.conv2d_depthwise3x3(
              x, w, no_bias, False, out, attrs), repeats),
          "weight grad": median_ms(lambda: depthwise_grad.depthwise3x3_weight_grad(
              dy, x, dw, attrs), repeats),
          "input grad": median_ms(lambda: input_grad(dy, w, dx, attrs), repeats),
          "floor": (median_ms(lambda: _read(x.reshape(-1)), repeats)
                    + median_ms(lambda: _write(out.reshape(-1)), repeats))}
    geometry = conv.geometry(attrs)
    checks = []
    for mine, run in ((out, lambda o: depthwise.conv2d_depthwise3x3(x, w, no_bias, False, o,
                                                                    attrs)),
                      (dw, lambda o: depthwise_grad.depthwise3x3_weight_grad(dy, x, o, attrs)),
                      (dx, lambda o: input_grad(dy, w, o, attrs))):
        run(mine)
        checks.append(mine)
    want_out, want_dw, want_dx = np.empty_like(out), np.empty_like(dw), np.empty_like(dx)
    launch(conv._conv2d, x, w, no_bias, False, want_out, *geometry)
    launch(conv._conv2d_weight_grad, dy, x, want_dw, *geometry)
    launch(conv._conv2d_input_grad, dy, w, want_dx, *geometry)
    ms["difference"] = max(float(np.abs(got - want).max() / np.abs(want).max())
                           for got, want in zip(checks, (want_out, want_dw, want_dx)))
    return ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    layers, repeats = (QUICK, 3) if args.quick else (LAYERS, args.repeats)
    names = ("forward", "weight grad", "input grad", "floor")
    totals = dict.fromkeys(names, 0.0)
    print(f"batch {args.batch_size}, {numba.get_num_threads()} threads; ms, median of {repeats}")
    for layer in layers:
        ms = compare(args.batch_size, layer, repeats)
        for name in names:
            totals[name] += ms[name]
        c, h, s = layer
        cells = "  ".join(f"{name} {ms[name]:.2f}" for name in names)
        print(f"{c:4d}@{h:<3d}/{s} {path(h, s):7s}: {cells}  forward/floor "
              f"{ms['forward'] / ms['floor']:.2f}  (difference {ms['difference']:.1e})")
    print("sum: " + "  ".join(f"{name} {totals[name]:.2f}" for name in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
