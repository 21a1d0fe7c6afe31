"""Pixel-wise loss kernels (pixel_cross_entropy, soft_dice and their gradients): parallel
over the pixels of the (N, C, S) view, a stable log-sum-exp over each pixel's C logits in
float64 (as cross_entropy's rows), the sums over pixels in float64 and a fixed order."""
from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from numba import prange

from graphcnn.backends.cpu.registry import JIT, cpu_kernel, launch
from graphcnn.ops.loss_pixel import (
    as_pixels,
    check_pixel_labels,
    class_weights,
    dice_terms,
    mean_of_sums,
)

_CHUNK = 1024  # pixels per partial sum of soft_dice's class sums


@numba.njit(inline="always")
def _peak_exp_sum(x, i, j):
    """Pixel (i, j)'s maximum logit m over the classes and the sum of exp(v - m): a NaN is
    the peak (the pixel is NaN), as cross_entropy's rows."""
    c = x.shape[1]
    peak = np.float64(x[i, 0, j])
    for k in range(1, c):
        v = np.float64(x[i, k, j])
        peak = v if (v > peak) | (v != v) else peak
    total = 0.0
    for k in range(c):
        total += math.exp(np.float64(x[i, k, j]) - peak)
    return peak, total


@numba.njit(**JIT)
def _pixel_nll(x, labels, weight, ignore, losses, weights):
    """losses[k] = weight[t] * nll and weights[k] = weight[t] at pixel k (0 and 0 where
    ignored: the pixel is skipped, so its logits are never read)."""
    n, _, s = x.shape
    for k in prange(n * s):
        i, j = k // s, k % s
        t = labels[i, j]
        if t == ignore:
            losses[k] = 0.0
            weights[k] = 0.0
            continue
        peak, total = _peak_exp_sum(x, i, j)
        w = weight[t]
        # (peak - picked) + log(total): see cross_entropy's kernel
        losses[k] = w * ((peak - np.float64(x[i, t, j])) + math.log(total))
        weights[k] = w


@numba.njit(**JIT)
def _pixel_ce_grad(x, labels, weight, ignore, scale, out):
    """(softmax - onehot) * coef, coef = weight[t] * scale, 0 where ignored (a product: a
    NaN logit gives NaN there too, as PyTorch's)."""
    n, c, s = x.shape
    for k in prange(n * s):
        i, j = k // s, k % s
        t = labels[i, j]
        coef = 0.0 if t == ignore else weight[t] * scale
        peak, total = _peak_exp_sum(x, i, j)
        for m in range(c):
            p = math.exp(np.float64(x[i, m, j]) - peak) / total
            out[i, m, j] = (p - (1.0 if m == t else 0.0)) * coef


def _prepared(op: str, ins: list[np.ndarray], attrs: dict[str, Any]
              ) -> tuple[np.ndarray, np.ndarray]:
    logits, labels = as_pixels(ins[-2], ins[-1])
    check_pixel_labels(op, labels, logits.shape[1], attrs["ignore_index"])
    return logits, labels


@cpu_kernel("pixel_cross_entropy")
def pixel_cross_entropy_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                               attrs: dict[str, Any]) -> None:
    x, t = _prepared("pixel_cross_entropy", ins, attrs)
    weight = class_weights(attrs["weight"], x.shape[1])
    losses = np.empty(t.size, np.float64)   # pixel-sized float64 scratch
    weights = np.empty(t.size, np.float64)
    launch(_pixel_nll, x, t, weight, attrs["ignore_index"], losses, weights)
    outs[0][()] = mean_of_sums(losses.sum(), weights.sum(), outs[0].dtype, attrs["reduction"])


@cpu_kernel("pixel_cross_entropy_grad")
def pixel_cross_entropy_grad_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                                    attrs: dict[str, Any]) -> None:
    x, t = _prepared("pixel_cross_entropy", ins, attrs)
    weight = class_weights(attrs["weight"], x.shape[1])
    g = float(ins[0])
    if attrs["reduction"] == "mean":
        keep = t != attrs["ignore_index"]
        total = weight[np.where(keep, t, 0)][keep].sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            g = float(np.float64(g) / total)
    launch(_pixel_ce_grad, x, t, weight, attrs["ignore_index"], g,
           outs[0].reshape(x.shape))


@numba.njit(**JIT)
def _dice_partials(x, labels, ignore, partials):
    """partials[b, c] = (sum p_c g_c, sum p_c, sum g_c) over chunk b of the kept pixels."""
    n, c, s = x.shape
    total_pixels = n * s
    for b in prange(partials.shape[0]):
        for m in range(c):
            partials[b, m, 0] = 0.0
            partials[b, m, 1] = 0.0
            partials[b, m, 2] = 0.0
        for k in range(b * _CHUNK, min(total_pixels, (b + 1) * _CHUNK)):
            i, j = k // s, k % s
            t = labels[i, j]
            if t == ignore:
                continue
            peak, total = _peak_exp_sum(x, i, j)
            for m in range(c):
                p = math.exp(np.float64(x[i, m, j]) - peak) / total
                partials[b, m, 1] += p
            partials[b, t, 0] += math.exp(np.float64(x[i, t, j]) - peak) / total
            partials[b, t, 2] += 1.0


@numba.njit(**JIT)
def _dice_grad(x, labels, ignore, a, b, g, out):
    """dx_m = p_m (dp_m - sum_c p_c dp_c), dp_c = -g (a_c [c == t] - b_c); 0 if ignored."""
    n, c, s = x.shape
    for k in prange(n * s):
        i, j = k // s, k % s
        t = labels[i, j]
        if t == ignore:
            for m in range(c):
                out[i, m, j] = 0.0
            continue
        peak, total = _peak_exp_sum(x, i, j)
        dot = 0.0
        for m in range(c):
            p = math.exp(np.float64(x[i, m, j]) - peak) / total
            dot += p * -g * ((a[m] if m == t else 0.0) - b[m])
        for m in range(c):
            p = math.exp(np.float64(x[i, m, j]) - peak) / total
            dp = -g * ((a[m] if m == t else 0.0) - b[m])
            out[i, m, j] = p * (dp - dot)


def _dice_sums(x: np.ndarray, t: np.ndarray, ignore: int) -> np.ndarray:
    chunks = max(1, -(-t.size // _CHUNK))
    partials = np.empty((chunks, x.shape[1], 3), np.float64)
    launch(_dice_partials, x, t, ignore, partials)
    return partials.sum(axis=0)   # in chunk order: the same sum at any thread count


@cpu_kernel("soft_dice")
def soft_dice_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                     attrs: dict[str, Any]) -> None:
    x, t = _prepared("soft_dice", ins, attrs)
    sums = _dice_sums(x, t, attrs["ignore_index"])
    _, loss, _, _ = dice_terms(sums, attrs["eps"], attrs["include_background"])
    with np.errstate(over="ignore"):
        outs[0][()] = outs[0].dtype.type(loss)


@cpu_kernel("soft_dice_grad")
def soft_dice_grad_kernel(ins: list[np.ndarray], outs: list[np.ndarray],
                          attrs: dict[str, Any]) -> None:
    x, t = _prepared("soft_dice", ins, attrs)
    sums = _dice_sums(x, t, attrs["ignore_index"])
    _, _, a, b = dice_terms(sums, attrs["eps"], attrs["include_background"])
    launch(_dice_grad, x, t, attrs["ignore_index"], a, b, float(ins[0]),
           outs[0].reshape(x.shape))
