"""Pixel-wise losses on the device: pixel_cross_entropy (a thread per pixel for the
weighted losses, then a one-block sum of the losses and of the weights) and soft_dice (a
block per class sums p*g, p and g over the pixels, one thread makes the loss); their
gradients read the scalar cotangent and the sums on the device. Logits are seen as
(N, C, S), S the pixels; every sum is in float64 and a fixed order.

The cpu kernels check the labels and raise; a plan cannot look at them without a copy to
the host, so here a label outside [0, C) that is not ignore_index makes the loss and its
gradient NaN (never a read out of bounds). gc.Trainer checks labels before any backend."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import types

from graphcnn.backends.cuda.device import numba_cuda
from graphcnn.backends.cuda.kernels.reduce import block_sum, peak_exp_sum
from graphcnn.backends.cuda.registry import (
    THREADS,
    Launch,
    cuda_kernel,
    device_function,
    device_kernel,
    flat,
    launch_1d,
    scratch,
)
from graphcnn.ops.loss_pixel import class_weights

cu = numba_cuda()
f8, i8, b1 = types.float64, types.int64, types.boolean


@device_function
def safe_div(a, b):
    """a / b with IEEE results for b == 0 (as NumPy's): +-inf, or NaN for 0/0 and NaN/0."""
    if b != 0.0:
        return a / b
    if a == 0.0 or a != a:
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


@device_function
def bad_label(t, c, ignore):
    return t != ignore and (t < 0 or t >= c)


@device_kernel(lambda f: (f[::1], i8[::1], f8[::1], i8, i8, i8, f8[::1], f8[::1]))
def _pixel_losses(x, labels, weight, c, s, ignore, losses, weights):
    """losses[k] = weight[t] * nll and weights[k] = weight[t] at pixel k (0 where ignored,
    NaN for a bad label)."""
    k = cu.grid(1)
    while k < labels.size:
        t = labels[k]
        if t == ignore:
            losses[k] = 0.0
            weights[k] = 0.0
        elif bad_label(t, c, ignore):
            losses[k] = math.nan
            weights[k] = math.nan
        else:
            base = (k // s) * c * s + k % s
            peak, total = peak_exp_sum(x, base, c, s)
            w = weight[t]
            losses[k] = w * ((peak - f8(x[base + t * s])) + math.log(total))
            weights[k] = w
        k += cu.gridsize(1)


@device_kernel(lambda f: (f8[::1], f8[::1], i8, b1, f[::1]))
def _ratio_of_sums(losses, weights, n, mean, out):
    """out[0] = sum(losses), rounded to out's dtype, divided by sum(weights) (rounded the
    same) if `mean`: the reference's mean_of_sums. One block."""
    buf = cu.shared.array(THREADS, f8)
    tid = cu.threadIdx.x
    total = 0.0
    count = 0.0
    i = tid
    while i < n:
        total += losses[i]
        count += weights[i]
        i += THREADS
    total = block_sum(buf, tid, total)
    count = block_sum(buf, tid, count)
    if tid == 0:
        out[0] = count
        rounded_count = f8(out[0])
        out[0] = total
        if mean:
            out[0] = safe_div(f8(out[0]), rounded_count)


@device_kernel(lambda f: (f8[::1], i8, f8[::1]))
def _sum_into(values, n, out):
    """out[0] = sum(values[:n]) in float64, one block, fixed order."""
    buf = cu.shared.array(THREADS, f8)
    tid = cu.threadIdx.x
    total = 0.0
    i = tid
    while i < n:
        total += values[i]
        i += THREADS
    total = block_sum(buf, tid, total)
    if tid == 0:
        out[0] = total


@device_kernel(lambda f: (f[::1], f[::1], i8[::1], f8[::1], i8, i8, i8, f8[::1], b1,
                          f[::1]))
def _pixel_ce_grad(g, x, labels, weight, c, s, ignore, wsum, mean, out):
    """(softmax - onehot) * weight[t] * g (/ sum of weights for 'mean'); 0 * (...) where
    ignored, as the reference; NaN for a bad label."""
    k = cu.grid(1)
    scale = safe_div(f8(g[0]), wsum[0]) if mean else f8(g[0])
    while k < labels.size:
        t = labels[k]
        base = (k // s) * c * s + k % s
        peak, total = peak_exp_sum(x, base, c, s)
        if bad_label(t, c, ignore):
            coef = math.nan
        else:
            coef = 0.0 if t == ignore else weight[t] * scale
        for m in range(c):
            p = math.exp(f8(x[base + m * s]) - peak) / total
            out[base + m * s] = (p - (1.0 if m == t else 0.0)) * coef
        k += cu.gridsize(1)


@device_kernel(lambda f: (i8[::1], f8[::1], i8, i8, f8[::1]))
def _pixel_weights(labels, weight, c, ignore, weights):
    k = cu.grid(1)
    while k < labels.size:
        t = labels[k]
        if t == ignore:
            weights[k] = 0.0
        elif bad_label(t, c, ignore):
            weights[k] = math.nan
        else:
            weights[k] = weight[t]
        k += cu.gridsize(1)


def _pixels(logits: Any) -> tuple[int, int, int]:
    n, c = logits.shape[:2]
    return n, c, int(np.prod(logits.shape[2:], dtype=np.int64))


def _device_weights(attrs: dict[str, Any], c: int) -> Any:
    return numba_cuda().to_device(class_weights(attrs["weight"], c))


@cuda_kernel("pixel_cross_entropy")
def pixel_cross_entropy_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]
                             ) -> list[Launch]:
    logits, labels = ins
    n, c, s = _pixels(logits)
    losses, weights = scratch(n * s), scratch(n * s)
    mean = attrs["reduction"] == "mean"
    return [launch_1d(_pixel_losses, n * s, flat(logits), flat(labels),
                      _device_weights(attrs, c), c, s, attrs["ignore_index"], losses, weights),
            Launch(_ratio_of_sums, 1, THREADS, (losses, weights, n * s, mean, flat(outs[0])))]


@cuda_kernel("pixel_cross_entropy_grad")
def pixel_cross_entropy_grad_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]
                                  ) -> list[Launch]:
    g, logits, labels = ins
    n, c, s = _pixels(logits)
    weight = _device_weights(attrs, c)
    weights, wsum = scratch(n * s), scratch(1)
    ignore = attrs["ignore_index"]
    mean = attrs["reduction"] == "mean"
    return [launch_1d(_pixel_weights, n * s, flat(labels), weight, c, ignore, weights),
            Launch(_sum_into, 1, THREADS, (weights, n * s, wsum)),
            launch_1d(_pixel_ce_grad, n * s, flat(g), flat(logits), flat(labels), weight, c,
                      s, ignore, wsum, mean, flat(outs[0]))]


# ---- soft_dice ----------------------------------------------------------------------------

@device_kernel(lambda f: (f[::1], i8[::1], i8, i8, i8, f8[::1]))
def _dice_class_sums(x, labels, c, s, ignore, sums):
    """Block m: sums[3m..3m+2] = (sum p_m g_m, sum p_m, sum g_m) over the kept pixels (a
    bad label makes all three NaN)."""
    buf = cu.shared.array(THREADS, f8)
    tid = cu.threadIdx.x
    m = cu.blockIdx.x
    while m < c:
        inter = 0.0
        psum = 0.0
        gsum = 0.0
        k = tid
        while k < labels.size:
            t = labels[k]
            if bad_label(t, c, ignore):
                inter = math.nan
            elif t != ignore:
                base = (k // s) * c * s + k % s
                peak, total = peak_exp_sum(x, base, c, s)
                p = math.exp(f8(x[base + m * s]) - peak) / total
                psum += p
                if t == m:
                    inter += p
                    gsum += 1.0
            k += THREADS
        inter = block_sum(buf, tid, inter)
        psum = block_sum(buf, tid, psum)
        gsum = block_sum(buf, tid, gsum)
        if tid == 0:
            sums[3 * m] = inter
            sums[3 * m + 1] = psum + inter * 0.0   # NaN from a bad label everywhere
            sums[3 * m + 2] = gsum + inter * 0.0
        m += cu.gridDim.x


@device_function
def dice_ab(sums, m, eps, first, counted):
    """The gradient's per-class constants (as the reference's dice_terms): A = 2 / den / K,
    B = (2 I + eps) / den^2 / K, both 0 for a class not counted."""
    if m < first:
        return 0.0, 0.0
    den = sums[3 * m + 1] + sums[3 * m + 2] + eps
    num = 2.0 * sums[3 * m] + eps
    return safe_div(2.0, den) / counted, safe_div(num, den * den) / counted


@device_kernel(lambda f: (f8[::1], i8, f8, i8, f[::1]))
def _dice_loss(sums, c, eps, first, out):
    """out[0] = 1 - mean of D_m over the classes counted (one thread)."""
    if cu.grid(1) == 0:
        total = 0.0
        for m in range(first, c):
            den = sums[3 * m + 1] + sums[3 * m + 2] + eps
            total += safe_div(2.0 * sums[3 * m] + eps, den)
        out[0] = 1.0 - total / (c - first)


@device_kernel(lambda f: (f[::1], f[::1], i8[::1], i8, i8, i8, f8[::1], f8, i8, f[::1]))
def _dice_grad(g, x, labels, c, s, ignore, sums, eps, first, out):
    """dx_m = p_m (dp_m - sum_j p_j dp_j), dp_m = -g (A_m [m == t] - B_m); 0 if ignored."""
    k = cu.grid(1)
    gv = f8(g[0])
    counted = f8(c - first)
    while k < labels.size:
        t = labels[k]
        base = (k // s) * c * s + k % s
        if t == ignore:
            for m in range(c):
                out[base + m * s] = 0.0
        else:
            peak, total = peak_exp_sum(x, base, c, s)
            dot = 0.0
            for m in range(c):
                a, b = dice_ab(sums, m, eps, first, counted)
                p = math.exp(f8(x[base + m * s]) - peak) / total
                dot += p * -gv * ((a if m == t else 0.0) - b)
            for m in range(c):
                a, b = dice_ab(sums, m, eps, first, counted)
                p = math.exp(f8(x[base + m * s]) - peak) / total
                out[base + m * s] = p * (-gv * ((a if m == t else 0.0) - b) - dot)
        k += cu.gridsize(1)


def _dice_sums_launch(logits: Any, labels: Any, attrs: dict[str, Any]) -> tuple[Any, Launch]:
    n, c, s = _pixels(logits)
    sums = scratch(3 * c)
    return sums, Launch(_dice_class_sums, c, THREADS,
                        (flat(logits), flat(labels), c, s, attrs["ignore_index"], sums))


@cuda_kernel("soft_dice")
def soft_dice_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    logits, labels = ins
    sums, first_launch = _dice_sums_launch(logits, labels, attrs)
    first = 0 if attrs["include_background"] else 1
    return [first_launch, Launch(_dice_loss, 1, 1, (sums, logits.shape[1], attrs["eps"],
                                                    first, flat(outs[0])))]


@cuda_kernel("soft_dice_grad")
def soft_dice_grad_plan(ins: list[Any], outs: list[Any], attrs: dict[str, Any]) -> list[Launch]:
    g, logits, labels = ins
    n, c, s = _pixels(logits)
    sums, first_launch = _dice_sums_launch(logits, labels, attrs)
    first = 0 if attrs["include_background"] else 1
    return [first_launch,
            launch_1d(_dice_grad, n * s, flat(g), flat(logits), flat(labels), c, s,
                      attrs["ignore_index"], sums, attrs["eps"], first, flat(outs[0]))]
