"""The implicit GEMM's rate (graphcnn/backends/cpu/kernels/implicit_gemm.py) on the layers
that choose it, alone, on one thread and on all: GFLOP/s of the direct convolution's
multiply-adds, median of `--repeats` calls.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/implicit_gemm.py \
        [--repeats 60] [--quick]

To compare two checkouts, run it from each with PYTHONPATH=<checkout>, in turns. --quick:
one small layer, 3 calls (to check the script runs).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numba
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:   # a PYTHONPATH checkout comes first
    sys.path.append(str(ROOT))

from graphcnn.backends.cpu.kernels import implicit_gemm, packed_gemm  # noqa: E402

# (label, input shape, weight shape, stride, padding)
LAYERS = (
    ("DenseNet-121 3x3 128->32 @14", (1, 128, 14, 14), (32, 128, 3, 3), 1, 1),
    ("DenseNet-121 3x3 128->32 @7", (1, 128, 7, 7), (32, 128, 3, 3), 1, 1),
    ("ResNet stem 7x7/2 3->64 @224", (1, 3, 224, 224), (64, 3, 7, 7), 2, 3),
    ("3x3 64->64 @56", (1, 64, 56, 56), (64, 64, 3, 3), 1, 1),
    ("3x3 256->256 @14", (1, 256, 14, 14), (256, 256, 3, 3), 1, 1),
)
QUICK = (("3x3 8->8 @12", (1, 8, 12, 12), (8, 8, 3, 3), 1, 1),)


def rate(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: int, pad: int,
         threads: int, repeats: int) -> float:
    """GFLOP/s of the implicit GEMM on this layer at `threads` threads."""
    rng = np.random.default_rng(0)
    x = rng.random(x_shape, dtype=np.float32)
    w = rng.random(w_shape, dtype=np.float32)
    attrs = dict(stride=(stride, stride), padding=(pad,) * 4, dilation=(1, 1), groups=1)
    side = (x_shape[2] + 2 * pad - w_shape[2]) // stride + 1
    out = np.empty((x_shape[0], w_shape[0], side, side), np.float32)
    panels = packed_gemm.packed_conv_weights(w)
    numba.set_num_threads(threads)
    implicit_gemm.conv2d_implicit_gemm(x, w, out, attrs, panels)   # compiles
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        implicit_gemm.conv2d_implicit_gemm(x, w, out, attrs, panels)
        times.append(time.perf_counter() - began)
    flops = 2 * out.size * w_shape[1] * w_shape[2] * w_shape[3]
    return flops / statistics.median(times) / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="one small layer, 3 calls")
    args = parser.parse_args(argv)
    layers, repeats = (QUICK, 3) if args.quick else (LAYERS, args.repeats)
    most = numba.config.NUMBA_NUM_THREADS
    print(f"implicit GEMM from {Path(implicit_gemm.__file__).parent.parent.parent.parent.parent}"
          f", GFLOP/s (median of {repeats} calls)")
    for label, x_shape, w_shape, stride, pad in layers:
        rates = [rate(x_shape, w_shape, stride, pad, n, repeats) for n in sorted({1, most})]
        # Three significant digits: a tiny layer on a busy host runs below 0.1 GFLOP/s.
        print(f"{label:30s} " + "  ".join(f"{n} thread{'s' if n > 1 else ''} {r:#6.3g}"
                                          for n, r in zip(sorted({1, most}), rates)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
