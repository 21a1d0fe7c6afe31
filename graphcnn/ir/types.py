"""Static tensor types: every value in a graph has a fixed shape and dtype."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DTYPES = ("float32", "float64", "int64")
SHORT_DTYPE = {"float32": "f32", "float64": "f64", "int64": "i64"}


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"unsupported dtype {self.dtype!r}; expected one of {DTYPES}")
        if any((not isinstance(d, (int, np.integer))) or d < 0 for d in self.shape):
            raise ValueError(f"shape {self.shape} must be a tuple of non-negative ints")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)   # a Python int: a hostile shape cannot overflow it

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    @property
    def is_float(self) -> bool:
        return self.dtype.startswith("float")

    def __str__(self) -> str:
        return f"{SHORT_DTYPE[self.dtype]}[{','.join(str(d) for d in self.shape)}]"
