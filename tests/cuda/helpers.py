"""Compare the cuda backend with the reference on one op: forward, and the op's gradient
graph (op + VJP, as tests/op_check.py builds it)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from op_check import forward, gradients


def check_cuda(op: str, arrays: Sequence[np.ndarray], attrs: dict[str, Any] | None = None,
               grad: bool = True, rtol: float = 1e-4, atol: float = 1e-5,
               dtype: str = "float32") -> None:
    attrs = attrs or {}
    want = forward(op, arrays, attrs, "reference", dtype)
    got = forward(op, arrays, attrs, "cuda", dtype)
    for k, (w, o) in enumerate(zip(want, got)):
        assert o.dtype == w.dtype and o.shape == w.shape, (op, k, o.dtype, o.shape, w.shape)
        np.testing.assert_allclose(o, w, rtol=rtol, atol=atol,
                                   err_msg=f"{op} output {k} (cuda vs reference), {attrs}")
    if grad:
        want = gradients(op, arrays, attrs, "reference", dtype)
        got = gradients(op, arrays, attrs, "cuda", dtype)
        for k, (w, o) in enumerate(zip(want, got)):
            np.testing.assert_allclose(o, w, rtol=rtol, atol=atol,
                                       err_msg=f"{op} gradient {k} (cuda vs reference), "
                                               f"{attrs}")


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed + sum(shape)).standard_normal(shape).astype(np.float32)
