"""Micro-timing of the kernels that NaN-propagating comparisons and the non-finite checks
touch: max-pool (3x3/2, the width-3 sweep; 2x2/2, the general loop), a 3x3 conv + relu
(Winograd, with the finite-output check), a 1x1 conv + relu, LeNet-5's 5x5 c1 + relu (the
direct kernel) and log_softmax. Run it against two checkouts to compare (one at a time, on a quiet
machine):

    PYTHONPATH=/path/to/old python benchmarks/float_semantics.py
    PYTHONPATH=/path/to/new python benchmarks/float_semantics.py

Prints the median milliseconds per call of each compiled one-op model."""
from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import numpy as np

import graphcnn as gc
from graphcnn import nn


def median_ms(fn: Callable[[], Any], repeat: int = 30) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def case(name: str, shape: tuple[int, ...], layer: Callable[[Any], Any], batch: int) -> None:
    x = gc.Input(shape, name="x")
    exe = gc.compile(gc.Model(x, layer(x)), batch_size=batch)
    data = np.random.default_rng(0).standard_normal((batch,) + shape).astype(np.float32)
    print(f"{name:34s} {median_ms(lambda: exe(data)):8.3f} ms", flush=True)


def main() -> None:
    case("max_pool 3x3/2 (16,64,112,112)", (64, 112, 112), nn.MaxPool2d(3, 2, 1), 16)
    case("max_pool 2x2/2 (16,64,56,56)", (64, 56, 56), nn.MaxPool2d(2), 16)
    case("conv3x3+relu 64->64 (8,.,56,56)", (64, 56, 56),
         lambda h: gc.relu(nn.Conv2d(64, 64, 3, padding=1)(h)), 8)
    case("conv1x1+relu 64->128 (8,.,56,56)", (64, 56, 56),
         lambda h: gc.relu(nn.Conv2d(64, 128, 1)(h)), 8)
    case("conv5x5+relu 1->6 (64,1,28,28)", (1, 28, 28),
         lambda h: gc.relu(nn.Conv2d(1, 6, 5, padding=2)(h)), 64)
    case("log_softmax (256,1000)", (1000,), gc.log_softmax, 256)


if __name__ == "__main__":
    main()
