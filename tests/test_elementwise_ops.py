"""Elementwise activations and broadcasting arithmetic: cpu vs reference, gradients vs
finite differences."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from op_check import check_op

shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values with |x| >= 0.1, so finite differences never straddle a kink at 0."""
    x = rng.uniform(0.1, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    return x.astype(np.float32)


@pytest.mark.parametrize("op,attrs", [("relu", {}), ("leaky_relu", {"alpha": 0.2}),
                                      ("sigmoid", {}), ("tanh", {}),
                                      ("clip", {"low": -0.5, "high": 0.7})])
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_activation(op, attrs, shape, seed):
    x = away_from_zero(np.random.default_rng(seed), shape)
    if op == "clip":  # keep away from both bounds
        x = np.where(np.abs(x - 0.7) < 0.05, x + 0.2, x)
        x = np.where(np.abs(x + 0.5) < 0.05, x - 0.2, x).astype(np.float32)
    check_op(op, [x], attrs)


@pytest.mark.parametrize("op", ["relu_grad", "leaky_relu_grad", "sigmoid_grad", "tanh_grad",
                                "clip_grad"])
def test_activation_grad_ops(op):
    rng = np.random.default_rng(0)
    attrs = {"leaky_relu_grad": {"alpha": 0.1}, "clip_grad": {"low": -1.0, "high": 1.0}}.get(op, {})
    g, x = away_from_zero(rng, (3, 4)), away_from_zero(rng, (3, 4))
    if op in ("sigmoid_grad", "tanh_grad"):
        x = np.tanh(x)
    check_op(op, [g, x], attrs)


def broadcastable(draw, shape):
    """A shape that broadcasts against `shape`: some axes set to 1, maybe fewer axes."""
    drop = draw(st.integers(0, len(shape)))
    tail = list(shape[drop:])
    for i in range(len(tail)):
        if draw(st.booleans()):
            tail[i] = 1
    return tuple(tail)


@st.composite
def binary_case(draw):
    shape = draw(shapes)
    other = broadcastable(draw, shape)
    if draw(st.booleans()):
        return shape, other
    return other, shape


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
@given(case=binary_case(), seed=st.integers(0, 2**16))
def test_binary_broadcast(op, case, seed):
    rng = np.random.default_rng(seed)
    a = away_from_zero(rng, case[0])
    b = away_from_zero(rng, case[1])
    check_op(op, [a, b], {})


@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=5).map(tuple), data=st.data())
def test_sum_to_and_broadcast_to(shape, data):
    target = broadcastable(data.draw, shape)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    check_op("sum_to", [x], {"shape": target})
    small = np.random.default_rng(1).standard_normal(target).astype(np.float32)
    check_op("broadcast_to", [small], {"shape": shape})


def test_clip_keeps_nan_like_numpy():
    """clip's formula, in the cpu's generated kernels alone or fused, is selects
    (vectorizable), not min/max; NaN still comes out NaN, as in np.clip and the reference."""
    from op_check import forward

    import graphcnn as gc
    x = np.float32([[np.nan, -1.0, 0.3, 2.0, 6.5, -np.inf]])
    want = np.clip(x, 0.0, 6.0)
    for backend in ("reference", "cpu"):
        (y,) = forward("clip", [x], {"low": 0.0, "high": 6.0}, backend)
        np.testing.assert_array_equal(y, want)
    inp = gc.Input((6,), name="x")
    model = gc.Model(inp, gc.relu6(inp * 2.0))  # mul + clip: one generated epilogue
    exe = gc.compile(model, batch_size=1)
    assert exe.report()["kernels"] == 1
    np.testing.assert_array_equal(exe(x), np.clip(x * 2.0, 0.0, 6.0))


@pytest.mark.parametrize("op,attrs", [("relu", {}), ("leaky_relu", {"alpha": 0.1}),
                                      ("clip", {"low": -1.0, "high": 1.0}), ("sigmoid", {}),
                                      ("tanh", {})])
def test_activations_propagate_nan_like_the_reference(op, attrs):
    """NaN in, NaN out (relu too, as in PyTorch: relu(nan) is nan), on the cpu backend's
    generated kernels as in the reference; infinities as the reference says."""
    from op_check import forward
    x = np.float32([[np.nan, -np.inf, -2.0, -0.0, 0.0, 0.5, 3.0, np.inf]])
    (want,) = forward(op, [x], attrs, "reference")
    (got,) = forward(op, [x], attrs, "cpu")
    assert np.isnan(want[0, 0]) and np.isnan(got[0, 0])
    np.testing.assert_allclose(got, want, rtol=4e-7, atol=0)  # the cpu's tanh: 3 ulps


def test_relu_grad_passes_g_where_x_is_nan_like_pytorch():
    from op_check import forward
    g = np.float32([[1.5, 2.0, 3.0, np.nan]])
    x = np.float32([[np.nan, -1.0, 2.0, 1.0]])
    for backend in ("reference", "cpu"):
        (y,) = forward("relu_grad", [g, x], {}, backend)
        np.testing.assert_array_equal(y, np.float32([[1.5, 0.0, 3.0, np.nan]]))


def test_fused_conv_relu_propagates_nan():
    import graphcnn as gc
    from graphcnn import nn
    inp = gc.Input((2, 6, 6), name="x")
    model = gc.Model(inp, gc.relu(nn.Conv2d(2, 3, 3, padding=1)(inp)))
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 6)).astype(np.float32)
    x[0, 0, 2, 2] = np.nan            # NaN in the 3x3 windows around (2, 2) only
    exe = gc.compile(model, batch_size=1)
    assert exe.report()["kernels"] == 1
    want = gc.compile(model, batch_size=1, backend="reference")(x)
    got = exe(x)
    assert np.isnan(got[0, :, 1:4, 1:4]).all() and not np.isnan(got[0, :, 5, 5]).any()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)  # NaN where it has NaN


def test_clip_gradient_is_zero_where_x_was_clipped_to_a_bound_float32_cannot_hold():
    """clip's gradient reads its output (as relu's): where x was clipped to 0.7, the output
    is float32's 0.69999999, which must not count as inside (-0.5, 0.7)."""
    from op_check import gradients
    x = np.float32([1.0, 0.3, -1.0, 0.7, -0.5])
    for backend in ("reference", "cpu"):
        _, dx = gradients("clip", [x], {"low": -0.5, "high": 0.7}, backend)
        assert (dx[[0, 2, 3, 4]] == 0).all() and dx[1] != 0, backend
