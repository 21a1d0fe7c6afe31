"""Elementwise math that LLVM can vectorize, for the cpu kernels and generated epilogues.

libm's tanhf is a call per element (about 12 ns here); a rational approximation is a few
fused multiply-adds and one division that run 16 lanes at a time (about 0.3 ns). In
float32 it is within 4e-7 of the exact tanh (3 ulps near 1); float64
keeps libm, so gradient checks in float64 see the exact function.

The cpu code generator renders `math.tanh` in an op's scalar formula as `fast_tanh`
(`CPU_SCALAR_CALLS`, applied by graphcnn/backends/lowering.py's `Lowered.render`); the
CUDA generator keeps the device's own tanh.
"""
from __future__ import annotations

import math

import numpy as np
from numba import types
from numba.extending import overload

# The odd numerator and even denominator of a [13/6] rational fit of tanh on [-c, c];
# outside c = 7.905 tanh is 1 to float32 precision, so the input is clamped there.
_F32 = np.float32
_CLAMP = _F32(7.90531110763549805)
_P = tuple(_F32(a) for a in (4.89352455891786e-03, 6.37261928875436e-04,
                             1.48572235717979e-05, 5.12229709037114e-08,
                             -8.60467152213735e-11, 2.00018790482477e-13,
                             -2.76076847742355e-16))
_Q = tuple(_F32(b) for b in (4.89352518554385e-03, 2.26843463243900e-03,
                             1.18534705686654e-04, 1.19825839466702e-06))

# Library calls in ops' scalar formulas that the cpu generator renames, and to what.
CPU_SCALAR_CALLS = {"math.tanh": "fast_tanh"}


def fast_tanh(x: float) -> float:
    """tanh(x); compiled by the overload below (this body runs only in plain Python)."""
    return math.tanh(x)


@overload(fast_tanh, jit_options={"error_model": "numpy"})
def _fast_tanh_impl(x):  # noqa: ANN001, ANN202 (a Numba typing hook)
    if x == types.float32:
        p1, p3, p5, p7, p9, p11, p13 = _P
        q0, q2, q4, q6 = _Q
        clamp = _CLAMP

        def tanh32(x):
            if x > clamp:
                x = clamp
            if x < -clamp:
                x = -clamp
            x2 = x * x
            p = x2 * p13 + p11
            p = x2 * p + p9
            p = x2 * p + p7
            p = x2 * p + p5
            p = x2 * p + p3
            p = x2 * p + p1
            q = x2 * q6 + q4
            q = x2 * q + q2
            q = x2 * q + q0
            return x * p / q
        return tanh32
    if isinstance(x, types.Float):
        return lambda x: math.tanh(x)
    return None
