"""ResNet-50's convolutions in the two layouts, alone, in one process: the best of
graphcnn's NCHW kernels (the pixels-in-lanes and channels-in-lanes packed GEMMs, and the
implicit GEMM where the window is wider than 1x1) against the blocked tap-table kernel on
an NCHW16c input (backends/cpu/kernels/nchw16c_conv.py), each the median of `--repeats`
calls, with the blocked kernel's GFLOP/s per core and its result checked against the
packed GEMM's; and the autotuner's `nchw16c` algorithm (kernels/nchw16c_nchw.py: the
blocked kernel on the NCHW input, copied back to NCHW), which competes with the NCHW
kernels. Winograd, which the 3x3 stride-1 layers take in NCHW, is not among them.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/blocked_vs_nchw.py \
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

from graphcnn.backends.cpu.kernels import (  # noqa: E402
    implicit_gemm,
    nchw16c,
    nchw16c_nchw,
    packed_gemm,
    packed_images,
)
from graphcnn.bench.common import measure  # noqa: E402

# (input channels, input size, output channels, kernel, stride, padding): ResNet-50's
LAYERS = ((3, 224, 64, 7, 2, 3), (64, 56, 64, 1, 1, 0), (64, 56, 256, 1, 1, 0), (256, 56, 64, 1, 1, 0),
          (64, 56, 64, 3, 1, 1), (256, 56, 128, 1, 1, 0), (128, 56, 128, 3, 2, 1),
          (256, 56, 512, 1, 2, 0), (128, 28, 512, 1, 1, 0), (512, 28, 128, 1, 1, 0),
          (128, 28, 128, 3, 1, 1), (256, 28, 256, 3, 2, 1), (256, 14, 1024, 1, 1, 0),
          (1024, 14, 256, 1, 1, 0), (256, 14, 256, 3, 1, 1), (512, 14, 512, 3, 2, 1),
          (512, 7, 2048, 1, 1, 0), (2048, 7, 512, 1, 1, 0), (512, 7, 512, 3, 1, 1))
QUICK = ((16, 8, 32, 1, 1, 0), (16, 8, 32, 3, 2, 1))


def median_ms(run: Callable[[], None], repeats: int) -> float:
    return float(measure(run, repeats, warmup=2)["median_ms"])


def compare(batch: int, layer: tuple[int, ...], repeats: int) -> dict[str, float]:
    """ms of each kernel on one layer, the blocked kernel's GFLOP/s per core, and its
    largest difference from the packed GEMM relative to the largest output."""
    c, h, o, k, s, p = layer
    rng = np.random.default_rng(c * 7 + o)
    attrs = {"stride": (s, s), "padding": (p,) * 4, "dilation": (1, 1), "groups": 1}
    x = rng.standard_normal((batch, c, h, h), dtype=np.float32)
    w = rng.standard_normal((o, c, k, k), dtype=np.float32) * np.float32(0.05)
    bias = rng.standard_normal(o, dtype=np.float32)
    oh = (h + 2 * p - k) // s + 1
    out = np.empty((batch, o, oh, oh), np.float32)
    pixels, channels = packed_gemm.packed_conv_weights(w), packed_gemm.packed_conv_weights(
        w, packed_gemm.LANES)
    ms = {"packed": median_ms(lambda: packed_images.conv2d_packed(
              x, w, out, attrs, pixels, bias), repeats),
          "packed-channels": median_ms(lambda: packed_images.conv2d_packed_channels(
              x, w, out, attrs, channels), repeats)}
    if k > 1 or s > 1:
        ms["implicit"] = median_ms(lambda: implicit_gemm.conv2d_implicit_gemm(
            x, w, out, attrs, pixels, bias), repeats)
    blocks = -(-o // 16)
    xb = np.empty((batch, -(-c // 16), h, h, 16), np.float32)
    nchw16c._to_nchw16c(x, xb)
    ob = np.empty((batch, blocks, oh, oh, 16), np.float32)
    prepared = nchw16c.prepare([x, w, bias], blocks, np.float32)
    conv = nchw16c.conv_pointwise if k == 1 and s == 1 else nchw16c.conv_implicit
    ms["blocked"] = median_ms(lambda: conv([xb, w, bias], ob, attrs, prepared=prepared),
                              repeats)
    ms["nchw16c"] = median_ms(lambda: nchw16c_nchw.conv2d_through_blocks(
        x, w, out, attrs, prepared.weights, bias), repeats)
    got, want = np.empty_like(out), np.empty_like(out)
    nchw16c._from_nchw16c(ob, got)
    packed_images.conv2d_packed(x, w, want, attrs, pixels, bias)
    flops = 2 * batch * o * c * k * k * oh * oh
    ms["blocked GFLOP/s a core"] = flops / (ms["blocked"] * 1e-3) / 1e9 / numba.get_num_threads()
    ms["difference"] = float(np.abs(got - want).max() / np.abs(want).max())
    return ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    layers, repeats = (QUICK, 3) if args.quick else (LAYERS, args.repeats)
    totals = {"best NCHW": 0.0, "blocked": 0.0}
    print(f"batch {args.batch_size}, {numba.get_num_threads()} threads; ms, median of {repeats}")
    for layer in layers:
        ms = compare(args.batch_size, layer, repeats)
        best = min(v for name, v in ms.items() if name in ("packed", "packed-channels",
                                                           "implicit"))
        totals["best NCHW"] += best
        totals["blocked"] += ms["blocked"]
        c, h, o, k, s, _ = layer
        cells = "  ".join(f"{name} {ms[name]:.2f}" for name in
                          ("packed", "packed-channels", "implicit", "nchw16c", "blocked")
                          if name in ms)
        print(f"{c:5d}@{h:<3d}-> {o:5d} {k}x{k}/{s}: {cells}  blocked/best "
              f"{ms['blocked'] / best:.2f}  ({ms['blocked GFLOP/s a core']:.0f} GFLOP/s a "
              f"core, difference {ms['difference']:.1e})")
    print(f"sum: best NCHW {totals['best NCHW']:.2f} ms, blocked {totals['blocked']:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
