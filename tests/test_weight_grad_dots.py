"""The weight gradient as blocked dots (kernels/weight_grad_dots.py) against the NumPy
reference, on random shapes: 1x1 stride-1 convs (the planes read in place) and strided,
padded kernels (im2col by runs), channels in and out of whole blocks of four, batch 1
and larger, runs shorter than a plane."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from op_check import forward

from graphcnn.backends.cpu.kernels import weight_grad_dots

POINTWISE = dict(stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1)


def reference(dy: np.ndarray, x: np.ndarray, attrs: dict, kernel: tuple[int, int]
              ) -> np.ndarray:
    (want,) = forward("conv2d_weight_grad", [dy, x], dict(attrs, kernel_hw=kernel),
                      "reference", "float64")
    return want


def check(dy: np.ndarray, x: np.ndarray, attrs: dict, kernel: tuple[int, int]) -> None:
    out = np.empty((dy.shape[1], x.shape[1], *kernel), dy.dtype)
    weight_grad_dots.conv2d_weight_grad_dots(dy, x, out, attrs)
    want = reference(dy, x, attrs, kernel)
    tolerance = 1e-5 if dy.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, want, rtol=tolerance,
                               atol=tolerance * max(1.0, float(np.abs(want).max())))


def output_hw(size: int, k: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - k) // stride + 1


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), o=st.integers(1, 11), c=st.integers(1, 10),
       h=st.integers(1, 9), w=st.integers(1, 40), dtype=st.sampled_from(["float32", "float64"]),
       seed=st.integers(0, 2**16))
def test_pointwise_dots_equal_the_reference(n, o, c, h, w, dtype, seed):
    rng = np.random.default_rng(seed)
    check(rng.standard_normal((n, o, h, w)).astype(dtype),
          rng.standard_normal((n, c, h, w)).astype(dtype), POINTWISE, (1, 1))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), o=st.integers(1, 9), c=st.integers(1, 4), k=st.integers(1, 7),
       stride=st.integers(1, 3), pad=st.integers(0, 3), size=st.integers(7, 30),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**16))
def test_strided_padded_dots_equal_the_reference(n, o, c, k, stride, pad, size, dtype, seed):
    """The stems' shapes in small: few channels, kernels up to 7x7, strides up to 3."""
    pad = min(pad, k - 1)
    oh = output_hw(size, k, stride, pad)
    attrs = dict(stride=(stride, stride), padding=(pad, pad, pad, pad), dilation=(1, 1),
                 groups=1)
    rng = np.random.default_rng(seed)
    check(rng.standard_normal((n, o, oh, oh)).astype(dtype),
          rng.standard_normal((n, c, size, size)).astype(dtype), attrs, (k, k))


def test_runs_shorter_than_the_plane_sum_as_one(monkeypatch):
    """Planes of 3000 pixels: several runs each, on both threads' partials."""
    monkeypatch.setattr(weight_grad_dots, "RUN_BYTES", 4096)
    assert weight_grad_dots.run_length(27, 4) < 3000
    rng = np.random.default_rng(3)
    attrs = dict(stride=(2, 2), padding=(1, 1, 1, 1), dilation=(1, 1), groups=1)
    check(rng.standard_normal((2, 8, 50, 60)).astype(np.float32),
          rng.standard_normal((2, 3, 100, 120)).astype(np.float32), attrs, (3, 3))
    check(rng.standard_normal((1, 8, 50, 60)).astype(np.float32),
          rng.standard_normal((1, 64, 50, 60)).astype(np.float32), POINTWISE, (1, 1))


@pytest.mark.parametrize("special", [np.nan, np.inf])
def test_nan_and_inf_reach_the_weights_they_meet(special):
    """A NaN or Inf in x reaches every weight whose window reads it, as in the reference."""
    rng = np.random.default_rng(4)
    attrs = dict(stride=(2, 2), padding=(1, 1, 1, 1), dilation=(1, 1), groups=1)
    dy = rng.standard_normal((1, 6, 4, 4)).astype(np.float32)
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    x[0, 2, 3, 5] = special
    out = np.empty((6, 3, 3, 3), np.float32)
    weight_grad_dots.conv2d_weight_grad_dots(dy, x, out, attrs)
    want = reference(dy, x, attrs, (3, 3))
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(out[finite], want[finite], rtol=1e-5, atol=1e-5)


def test_it_applies_to_one_group_with_few_columns_or_1x1():
    pad1 = dict(POINTWISE, padding=(1, 1, 1, 1))
    assert weight_grad_dots.applies((2, 3, 8, 8), (64, 3, 7, 7), pad1, np.float32)
    assert weight_grad_dots.applies((2, 512, 7, 7), (64, 512, 1, 1), POINTWISE, np.float32)
    assert not weight_grad_dots.applies((2, 64, 8, 8), (64, 64, 3, 3), pad1, np.float32)
    assert not weight_grad_dots.applies((2, 4, 8, 8), (4, 2, 1, 1), dict(POINTWISE, groups=2),
                                        np.float32)
