"""The accuracy contract every implementation of an op meets before it may be chosen.

An op with several implementations (candidates.py: im2col + GEMM, Winograd, the packed
GEMMs) computes the same sums in different orders and, for Winograd, through transforms
whose rounding grows with the channel count. Each candidate's error is measured against a
float64 yardstick, as max |out - exact| / max |exact| over the output tensor, and must stay
within

    max(FLOOR, factor x the error of the plain float32 im2col GEMM on the same operands)

(factor: GRAPHCNN_ACCURACY_FACTOR, default 10, at least 1). The yardstick is the im2col GEMM
run in float64 (dgemm: its own rounding is ~1e-16, so whichever algorithm it is does not
matter; the reference backend's einsum would take seconds per layer). Where the autotuner
measures (GRAPHCNN_AUTOTUNE=1), it measures the errors too, on the node's shapes (its frozen
weights and random operands for the rest), once per key and machine, in the same cache
file; a candidate outside the bound is not timed and never chosen. Where it does not
measure, each candidate's declared error growth (Candidate.error_growth, checked by
tests/test_accuracy.py on every shape family it applies to) must be within the factor.

    ok, errors = accuracy.meets(site, candidates)   # strategy.choose calls it for a tie

Whole models in training are held to the same contract per gradient tensor against a
float64 run (tests/test_accuracy.py, `graphcnn bench --train`): within
max(1e-3, 10x the float32 reference's error).
"""
from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

# Below this relative error every float32 result is as good as float32 gets (a few ulps of
# the output's largest entry): a bound never goes under it.
FLOOR = 1e-6
DEFAULT_FACTOR = 10.0
# The whole-model contract: each gradient tensor within max(MODEL_FLOOR, MODEL_FACTOR x the
# float32 reference's error) of a float64 run.
MODEL_FLOOR = 1e-3
MODEL_FACTOR = 10.0
# The candidate whose float32 error sets the bound (every conv tie has it).
BASELINE = "gemm"
# algorithm -> its declared error growth (Candidate.error_growth): the loops that sum each
# output in one float32 run over C*kH*kW terms (the packed microkernels, the direct convs)
# err up to ~6x OpenBLAS's blocked sums at ResNet's 4608; Winograd F(2x2, 3x3) adds the
# transforms' rounding, ~3x at 512 channels on 7x7 maps (tests/test_accuracy.py measures).
# F(4x4, 3x3)'s larger transforms err up to 23x in its forward conv and input gradient (1-5x
# in its weight gradient; winograd4.py): above the default factor, so the cost model never
# takes it, and the autotuner only where it measures the layer within. The weight
# gradient's blocked dots (dots) sum runs of pixels and add them in float64: less than the
# GEMM's.
ERROR_GROWTH = {"gemm": 1.0, "winograd": 6.0, "winograd-packed": 6.0, "winograd-f4": 30.0,
                "packed": 10.0, "packed-channels": 10.0, "implicit": 10.0, "nchw16c": 10.0,
                "direct": 10.0, "dots": 1.0}
# The ops whose ties are measured (those with a float64 yardstick below); others go by the
# declared growth.
MEASURED_OPS = ("conv2d", "conv2d_input_grad", "conv2d_weight_grad")


def factor() -> float:
    """GRAPHCNN_ACCURACY_FACTOR: how many times the float32 GEMM's error an implementation
    may have (default 10; values under 1 are taken as 1, so the GEMM itself always meets
    it). A bad value is an error naming the variable."""
    text = os.environ.get("GRAPHCNN_ACCURACY_FACTOR", "").strip()
    if not text:
        return DEFAULT_FACTOR
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"GRAPHCNN_ACCURACY_FACTOR={text!r}: expected a number such as 10"
                         ) from None
    if not np.isfinite(value):
        raise ValueError(f"GRAPHCNN_ACCURACY_FACTOR={text!r}: expected a finite number")
    return max(1.0, value)


def relative_error(out: np.ndarray, exact: np.ndarray) -> float:
    """max |out - exact| / max |exact| (the difference itself where exact is all zeros);
    inf where out has a NaN or Inf that exact does not."""
    exact = np.asarray(exact, np.float64)
    diff = np.abs(np.asarray(out, np.float64) - exact)
    if diff.size == 0:
        return 0.0
    if not np.all(np.isfinite(diff)):
        return float("inf")
    scale = float(np.max(np.abs(exact)))
    return float(np.max(diff)) / (scale if scale > 0 else 1.0)


def bound(errors: dict[str, float]) -> float:
    """The largest error the contract allows among `errors` (name -> measured error)."""
    base = errors.get(BASELINE, min(errors.values(), default=0.0))
    return max(FLOOR, factor() * base)


def model_bound(reference_error: float) -> float:
    """The whole-model contract for one gradient tensor, given the float32 reference's (or
    PyTorch float32's) error on it."""
    return max(MODEL_FLOOR, MODEL_FACTOR * reference_error)


def yardstick(op: str) -> Callable[..., None]:
    """f(a, b, out, attrs): the op in float64 by im2col + dgemm (conv_gemm.py and
    conv_gemm_grad.py)."""
    from graphcnn.backends.cpu.kernels import conv_gemm, conv_gemm_grad
    return getattr(conv_gemm if op == "conv2d" else conv_gemm_grad, {"conv2d": "conv2d_gemm",
                               "conv2d_input_grad": "conv2d_input_grad_gemm",
                               "conv2d_weight_grad": "conv2d_weight_grad_gemm"}[op])


def measure(site: Any, candidates: list[Any]) -> dict[str, float]:
    """Each candidate's relative error on the site's operands (its frozen weights, random
    ones for the rest) against the float64 yardstick."""
    ins, _ = site.scratch()
    exact = np.empty(site.out_shape, np.float64)
    yardstick(site.op)(ins[0].astype(np.float64), ins[1].astype(np.float64), exact,
                       site.attrs)
    with_bias = exact
    if len(ins) == 3:
        with_bias = exact + ins[2].astype(np.float64)[None, :, None, None]
    errors = {}
    for candidate in candidates:
        core = candidate.build(site)
        out = np.empty(site.out_shape, site.out_dtype)
        core.run(ins, out)
        errors[candidate.name] = relative_error(
            out, with_bias if core.adds_bias and len(ins) == 3 else exact)
    return errors


def declared_ok(candidate: Any) -> bool:
    """Whether the candidate's declared error growth is within the factor."""
    return float(candidate.error_growth) <= factor()


def meets(site: Any, candidates: list[Any], measured: dict[str, float] | None
          ) -> tuple[list[Any], str]:
    """(the candidates that meet the contract, a note naming those that do not and why).
    `measured`: their errors (measure()), or None to go by the declared growth."""
    if measured is None:
        kept = [c for c in candidates if declared_ok(c)]
        dropped = [f"{c.name} (declared {c.error_growth:g}x the GEMM's error)"
                   for c in candidates if not declared_ok(c)]
    else:
        limit = bound(measured)
        kept = [c for c in candidates if measured.get(c.name, float("inf")) <= limit]
        dropped = [f"{c.name} (error {measured.get(c.name, float('inf')):.1e} > "
                   f"{limit:.1e})" for c in candidates if c not in kept]
    if not kept:  # cannot happen with the GEMM among them (factor >= 1); never choose none
        return list(candidates), ""
    note = f"; outside the accuracy contract: {', '.join(dropped)}" if dropped else ""
    return kept, note
