"""Training batch norm's statistics and output (batch_norm_train) in the input's own
precision, with a float64 loop per channel as the exact fallback.

A float64 kernel (as norm.py's gradient) converts every element to float64: that halves
the vector lanes and adds a conversion per element, and made the sums, not memory, the
limit (MobileNetV2's 16x576x14x14 batch norm ran 4x a copy's time at one thread). Here each (n, c) row is
summed in dtype lanes and only the rows' sums are float64:

- statistics: each row's mean, then its squared deviations from that mean, read again
  while the row is in cache (S <= 12544 floats in MobileNetV2), shifted sums
  sum(d^2) - sum(d)^2 / S correcting the row mean's rounding; the rows are then combined
  with Chan's formula in float64. The activations leave memory twice (statistics,
  output) instead of three times, and the per-row two-pass keeps the accuracy of the
  reference's two-pass variance.
- output: (x - m_hi - m_lo) * scale + shift with the mean split into two dtype parts, so
  x - mean loses nothing to the mean's rounding.

The gradient stays on norm.py's float64 sums: its dx is a difference of three terms that
nearly cancel when a channel holds few values or dy is nearly linear in x, and dtype sums
would leave their rounding (1e-7 of dy) in a far smaller dx.

The output takes the activation the graph put in the batch norm (relu, or clip for
ReLU6: passes/bn_train_activation.py) as it is written, with the formulas of the relu and
clip ops, in dtype.

A channel whose statistics, scale or outputs are not finite (NaN or Inf inputs, overflow in
dtype where float64 would not) is computed again in float64 (_channel_exact), so NaN
and Inf come out as the reference's.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from graphcnn.backends.cpu.registry import JIT

# Reassociation splits the dtype sums into vector lanes; contraction lets a * b + c be one
# fused multiply-add (closer to the float64 reference, not further).
_FAST = dict(JIT, fastmath={"reassoc", "contract"})
# Beyond it a float64 scale or coefficient overflows float32, or its products would.
_BIG = 1e30


@numba.njit(inline="always")
def _activate(y, act, zero, low, high):
    """y through the activation `act` (ops/norm.py's ACTIVATION_CODES), in y's dtype: the relu
    and clip ops' scalar formulas (ops/elementwise.py), NaN staying NaN."""
    if act == 1:
        return zero if y <= zero else y
    if act == 2:
        return low if y < low else (high if y > high else y)
    return y


@numba.njit(inline="always")
def _row_moments(x, n, c, s_len, zero, tmp):
    """(mean, sum of squared deviations) of row x[n, c], in float64, from dtype sums
    (zero: dtype's; a float64 0.0 would widen them)."""
    t = zero
    for s in range(s_len):
        t += x[n, c, s]
    tmp[0] = np.float64(t) / s_len   # the row mean, rounded to dtype
    m = tmp[0]
    u = q = zero
    for s in range(s_len):
        d = x[n, c, s] - m
        u += d
        q += d * d
    u64 = np.float64(u)
    return np.float64(m) + u64 / s_len, np.float64(q) - u64 * u64 / s_len


@numba.njit(inline="always")
def _channel_exact(x, c, weight, bias, eps, out):
    """Channel c in float64 throughout, the reference's two passes: (mean, var), out
    written."""
    n_len, s_len = x.shape[0], x.shape[2]
    count = max(n_len * s_len, 1)
    total = 0.0
    for n in range(n_len):
        for s in range(s_len):
            total += x[n, c, s]
    mean = total / count
    total = 0.0
    for n in range(n_len):
        for s in range(s_len):
            d = np.float64(x[n, c, s]) - mean
            total += d * d
    var = total / count
    scale = np.float64(weight[c]) / math.sqrt(var + eps)
    shift = np.float64(bias[c])
    for n in range(n_len):
        for s in range(s_len):
            out[n, c, s] = (x[n, c, s] - mean) * scale + shift
    return mean, var


@numba.njit(**_FAST)
def batch_norm_train_fast(x, weight, bias, eps, act, low, high, out, mean_out, var_out):
    n_len, c_len, s_len = x.shape
    for c in prange(c_len):
        tmp = np.zeros(6, x.dtype)   # conversions to dtype
        zero = tmp[5]
        tmp[4], tmp[5] = low, high
        lo, hi = tmp[4], tmp[5]
        mean, m2, rows = 0.0, 0.0, 0
        for n in range(n_len):
            row_mean, row_m2 = _row_moments(x, n, c, s_len, zero, tmp)
            # Chan et al.: merge the rows so far (rows * s_len values) with this one.
            delta = row_mean - mean
            rows += 1
            mean += delta / rows
            m2 += row_m2 + delta * delta * s_len * (rows - 1) / rows
        var = m2 / max(n_len * s_len, 1)
        scale = np.float64(weight[c]) / math.sqrt(var + eps)
        shift = np.float64(bias[c])
        fast = (math.isfinite(mean) and math.isfinite(var) and abs(scale) < _BIG
                and abs(mean) < _BIG and abs(shift) < _BIG)
        if fast:
            tmp[0], tmp[2], tmp[3] = mean, scale, shift
            tmp[1] = mean - np.float64(tmp[0])
            m_hi, m_lo, sc, sh = tmp[0], tmp[1], tmp[2], tmp[3]
            probe = zero
            for n in range(n_len):
                for s in range(s_len):
                    y = (x[n, c, s] - m_hi - m_lo) * sc + sh
                    probe += y - y   # NaN if some y is not finite (y * 0 would widen)
                    out[n, c, s] = _activate(y, act, zero, lo, hi)
            fast = probe == 0
        if not fast:
            mean, var = _channel_exact(x, c, weight, bias, eps, out)
            if act != 0:
                for n in range(n_len):
                    for s in range(s_len):
                        out[n, c, s] = _activate(out[n, c, s], act, zero, lo, hi)
        mean_out[c] = mean
        var_out[c] = var
