"""Classifier layers at batch 1-16: OpenBLAS's GEMM (blas.matmul, split over Numba's
threads) against the columns loop (dense._matmul_nt_columns), weights out of cache as in a
model (a 64 MiB buffer is written between calls), medians.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m benchmarks.classifier_gemv [REPEATS]
"""
from __future__ import annotations

import sys
import time

import numpy as np

from graphcnn.backends.cpu import blas
from graphcnn.backends.cpu.kernels import dense
from graphcnn.backends.cpu.registry import launch

# (in features, out features): ResNet-18, DenseNet-121/GoogLeNet, MobileNetV2, ResNet-50,
# VGG-16's fc7 and fc6
LAYERS = [(512, 1000), (1024, 1000), (1280, 1000), (2048, 1000), (4096, 4096), (25088, 4096)]


def median_ms(call, repeats: int, evict: np.ndarray) -> float:
    call()
    times = []
    for _ in range(repeats):
        evict += 1   # the weights leave the cache, as between a model's layers
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    evict = np.zeros(16 << 20, np.float32)
    rng = np.random.default_rng(0)
    print(f"{'layer':>12} {'rows':>4} {'blas ms':>8} {'columns ms':>10} {'ratio':>6}")
    for k, n in LAYERS:
        w = rng.standard_normal((n, k)).astype(np.float32)
        no_bias = np.zeros(1, np.float32)
        for rows in (1, 2, 4, 8, 16):
            a = rng.standard_normal((rows, k)).astype(np.float32)
            out_b, out_c = np.empty((rows, n), np.float32), np.empty((rows, n), np.float32)
            t_blas = median_ms(lambda: blas.matmul(a, w.T, out_b), repeats, evict)
            t_cols = median_ms(lambda: launch(dense._matmul_nt_columns, a, w, out_c, no_bias,
                                              False), repeats, evict)
            np.testing.assert_allclose(out_c, out_b, rtol=1e-4, atol=1e-3)
            print(f"{k:>5}x{n:<6} {rows:>4} {t_blas:8.3f} {t_cols:10.3f} "
                  f"{t_cols / t_blas:6.2f}", flush=True)


if __name__ == "__main__":
    main()
