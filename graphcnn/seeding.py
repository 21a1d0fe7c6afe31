"""One seeded source of randomness for parameter initialization and dropout seeds, so
that a program gives the same numbers at every run (like torch.manual_seed)."""
from __future__ import annotations

import numpy as np

_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    global _rng
    _rng = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    return _rng


def next_seed() -> int:
    return int(_rng.integers(0, 2**31 - 1))
