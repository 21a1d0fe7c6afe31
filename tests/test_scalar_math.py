"""The cpu backend's vectorizable tanh: accurate in float32, exact libm in float64."""
import numba
import numpy as np

from graphcnn.backends.cpu import codegen
from graphcnn.backends.cpu.scalar_math import fast_tanh


@numba.njit(error_model="numpy")
def _apply(x, out):
    for i in range(x.size):
        out[i] = fast_tanh(x[i])


def test_float32_tanh_is_within_4e_7_of_the_exact_one():
    positive = np.concatenate([np.linspace(0, 20, 200_001, dtype=np.float32),
                               np.float32([1e-30, 1e-8, 7.9, 7.91, 3e38])])
    x = np.concatenate([positive, -positive])
    out = np.empty_like(x)
    _apply(x, out)
    exact = np.tanh(x.astype(np.float64))
    assert out.dtype == np.float32
    assert np.abs(out - exact).max() < 4e-7  # 3 float32 ulps near 1
    # Odd, bounded by 1 and exact at 0, like the real function.
    np.testing.assert_array_equal(out[:positive.size], -out[positive.size:])
    assert np.abs(out).max() <= 1.0 and out[0] == 0.0


def test_special_values_follow_ieee():
    x = np.float32([np.nan, np.inf, -np.inf])
    out = np.empty_like(x)
    _apply(x, out)
    assert np.isnan(out[0]) and out[1] == 1.0 and out[2] == -1.0


def test_float64_keeps_libm():
    x = np.linspace(-5, 5, 1001)
    out = np.empty_like(x)
    _apply(x, out)
    np.testing.assert_allclose(out, np.tanh(x), rtol=1e-15, atol=0)


def test_generated_epilogues_call_the_fast_tanh():
    attrs = dict(anchor="conv2d", anchor_attrs={}, anchor_inputs=2,
                 steps=[("tanh", {}, [-1])])
    source = codegen.generate_source(attrs)
    assert "fast_tanh(v)" in source and "math.tanh" not in source
    assert "error_model='numpy'" in source
