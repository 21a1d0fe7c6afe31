"""How fast gc.data.shapes draws a set: the best of a few runs, per configuration.

    python benchmarks/shapes_speed.py [--repeat 5]
"""
from __future__ import annotations

import argparse
import time

import graphcnn as gc

CONFIGS = [  # (n, size, channels)
    (1000, 64, 3), (1000, 64, 1), (1000, 32, 3), (10000, 32, 3), (200, 128, 3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    gc.data.shapes(2, 16)   # imports and first-call costs out of the timing
    print(f"{'n':>6} {'size':>5} {'ch':>3} {'best s':>8} {'images/s':>10}")
    for n, size, channels in CONFIGS:
        best = float("inf")
        for seed in range(args.repeat):
            start = time.perf_counter()
            gc.data.shapes(n, size, seed=seed, channels=channels)
            best = min(best, time.perf_counter() - start)
        print(f"{n:>6} {size:>5} {channels:>3} {best:>8.3f} {n / best:>10,.0f}")


if __name__ == "__main__":
    main()
