"""The 1x1 weight gradient's direct dots (kernels/pointwise_grad.py) against the NumPy
reference, on random shapes: channels in and out of whole blocks of four, batch 1 (each
image's rows split over the threads) and larger, runs of pixels shorter than a plane."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from op_check import forward

from graphcnn.backends.cpu.kernels import pointwise_grad

POINTWISE = dict(stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1)


def reference(dy: np.ndarray, x: np.ndarray) -> np.ndarray:
    (want,) = forward("conv2d_weight_grad", [dy, x], dict(POINTWISE, kernel_hw=(1, 1)),
                      "reference", "float64")
    return want


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), o=st.integers(1, 11), c=st.integers(1, 10),
       h=st.integers(1, 9), w=st.integers(1, 40), dtype=st.sampled_from(["float32", "float64"]),
       seed=st.integers(0, 2**16))
def test_the_dots_equal_the_reference(n, o, c, h, w, dtype, seed):
    rng = np.random.default_rng(seed)
    dy = rng.standard_normal((n, o, h, w)).astype(dtype)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    out = np.empty((o, c, 1, 1), dtype)
    pointwise_grad.conv2d_weight_grad_pointwise(dy, x, out, POINTWISE)
    want = reference(dy, x)
    tolerance = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(out, want, rtol=tolerance,
                               atol=tolerance * max(1.0, float(np.abs(want).max())))


def test_runs_shorter_than_the_plane_sum_as_one(monkeypatch):
    """Planes of 3000 pixels over 64 channels: several runs each, added in float64."""
    monkeypatch.setattr(pointwise_grad, "RUN_BYTES", 4096)
    assert pointwise_grad.run_length(64, 4) < 3000
    rng = np.random.default_rng(3)
    dy = rng.standard_normal((2, 8, 50, 60)).astype(np.float32)
    x = rng.standard_normal((2, 64, 50, 60)).astype(np.float32)
    out = np.empty((8, 64, 1, 1), np.float32)
    pointwise_grad.conv2d_weight_grad_pointwise(dy, x, out, POINTWISE)
    np.testing.assert_allclose(out, reference(dy, x), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("special", [np.nan, np.inf])
def test_nan_and_inf_reach_the_weights_they_meet(special):
    """A NaN or Inf in x reaches every weight of its channel, as in the reference."""
    rng = np.random.default_rng(4)
    dy = rng.standard_normal((1, 6, 4, 4)).astype(np.float32)
    x = rng.standard_normal((1, 5, 4, 4)).astype(np.float32)
    x[0, 2, 1, 3] = special
    out = np.empty((6, 5, 1, 1), np.float32)
    pointwise_grad.conv2d_weight_grad_pointwise(dy, x, out, POINTWISE)
    want = reference(dy, x)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(out), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(out[finite], want[finite], rtol=1e-5, atol=1e-5)


def test_the_split_covers_a_single_image_with_both_threads():
    assert pointwise_grad.parts(1, 2) == (1, 2)
    assert pointwise_grad.parts(16, 2) == (2, 1)
    assert pointwise_grad.parts(3, 4) == (3, 1)
