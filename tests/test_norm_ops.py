"""Batch norm (inference, training, its gradient helper) and dropout: cpu vs reference,
gradients vs finite differences, batch statistics vs a hand-written NumPy formula, the
dropout mask bit for bit across backends, and build errors."""
import re

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from op_check import check_forward, check_op, forward, run_graph

from graphcnn.autodiff import grad
from graphcnn.errors import GraphBuildError
from graphcnn.ir import Graph

bn_shapes = st.one_of(
    st.tuples(st.integers(1, 4), st.integers(1, 4)),
    st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)))


def bn_params(rng: np.random.Generator, channels: int) -> list[np.ndarray]:
    weight = rng.uniform(0.5, 1.5, channels).astype(np.float32)
    bias = rng.standard_normal(channels).astype(np.float32)
    mean = rng.standard_normal(channels).astype(np.float32)
    var = rng.uniform(0.5, 2.0, channels).astype(np.float32)
    return [weight, bias, mean, var]


def bn_graph(arrays: list[np.ndarray], attrs: dict, dtype: str):
    """batch_norm with x, weight, bias as inputs and the running statistics as constants
    (they are state, with no gradient); loss = sum(y * c); outputs: loss, dx, dw, db."""
    x, weight, bias, mean, var = arrays
    g = Graph("bn")
    ins = [g.input(f"in{i}", a.shape, dtype) for i, a in enumerate((x, weight, bias))]
    y = g.add("batch_norm", ins + [g.constant(mean.astype(dtype)), g.constant(var.astype(dtype))],
              **attrs)
    c = g.constant(np.random.default_rng(0).standard_normal(y.shape).astype(dtype))
    loss = g.add("sum_to", [g.add("mul", [y, c])], shape=())
    g.set_outputs([loss] + grad(g, loss, ins))
    return g, ins


@given(shape=bn_shapes, seed=st.integers(0, 2**16))
def test_batch_norm_inference(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    arrays = [x] + bn_params(rng, shape[1])
    attrs = {"eps": 1e-3, "momentum": 0.1}
    check_forward("batch_norm", arrays, attrs)
    weight, bias, mean, var = arrays[1:]
    c = (1, shape[1]) + (1,) * (len(shape) - 2)
    want = (x - mean.reshape(c)) / np.sqrt(var.reshape(c) + 1e-3) * weight.reshape(c) \
        + bias.reshape(c)
    np.testing.assert_allclose(forward("batch_norm", arrays, attrs, "cpu")[0], want,
                               rtol=1e-5, atol=1e-5)

    # gradients for x, weight, bias: finite differences (float64, reference) ...
    a64 = [a.astype(np.float64) for a in arrays]
    g, ins = bn_graph(a64, attrs, "float64")
    from graphcnn.runtime.executable import make_runner
    runner = make_runner(g, "reference")
    analytic = runner.run({v.id: a for v, a in zip(ins, a64)})[1:]
    for k in range(3):
        direction = rng.standard_normal(a64[k].shape)

        def loss_at(step, k=k, direction=direction):
            values = list(a64[:3])
            values[k] = values[k] + step * direction
            return float(runner.run({v.id: a for v, a in zip(ins, values)})[0])
        numeric = (loss_at(1e-6) - loss_at(-1e-6)) / 2e-6
        predicted = float(np.sum(analytic[k] * direction))
        assert abs(numeric - predicted) <= 1e-7 + 1e-5 * abs(numeric), (k, numeric, predicted)
    # ... and cpu gradients vs reference gradients (float32)
    g, ins = bn_graph(arrays, attrs, "float32")
    want = run_graph(g, "reference", ins, arrays[:3])
    got = run_graph(g, "cpu", ins, arrays[:3])
    for w, o in zip(want, got):
        np.testing.assert_allclose(o, w, rtol=1e-4, atol=1e-4)


def numpy_batch_norm_train(x, weight, bias, eps):
    axes = (0,) + tuple(range(2, x.ndim))
    c = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=axes)
    var = x64.var(axis=axes)  # biased, as PyTorch normalizes with
    y = (x64 - mean.reshape(c)) / np.sqrt(var.reshape(c) + eps) * weight.reshape(c) \
        + bias.reshape(c)
    return y, mean, var


# training needs more than one value per channel (test_batch_norm_train_one_value_...)
bn_train_shapes = bn_shapes.filter(lambda s: int(np.prod(s)) // s[1] > 1)


@given(shape=bn_train_shapes, seed=st.integers(0, 2**16))
def test_batch_norm_train(shape, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    weight, bias = bn_params(rng, shape[1])[:2]
    attrs = {"eps": 1e-3}
    got = forward("batch_norm_train", [x, weight, bias], attrs, "cpu")
    for o, w in zip(got, numpy_batch_norm_train(x, weight, bias, 1e-3)):
        assert o.dtype == np.float32
        np.testing.assert_allclose(o, w, rtol=1e-4, atol=1e-4)
    # forward cpu vs reference; gradients through y, mean and var (the loss uses all three)
    check_op("batch_norm_train", [x, weight, bias], attrs, atol=1e-4)


@given(shape=bn_shapes, seed=st.integers(0, 2**16))
def test_batch_norm_train_grad(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    weight = bn_params(rng, shape[1])[0]
    _, mean, var = numpy_batch_norm_train(x, weight, weight, 1e-3)
    arrays = [dy, x, weight, mean.astype(np.float32), var.astype(np.float32)]
    check_op("batch_norm_train_grad", arrays, {"eps": 1e-3}, grad=False, atol=1e-4)
    # the textbook formula, independently
    axes = (0,) + tuple(range(2, x.ndim))
    c = (1, shape[1]) + (1,) * (len(shape) - 2)
    m = x.size // shape[1]
    xhat = (x - mean.reshape(c)) / np.sqrt(var.reshape(c) + 1e-3)
    dxhat = dy * weight.reshape(c)
    dx = (m * dxhat - dxhat.sum(axes, keepdims=True)
          - xhat * (dxhat * xhat).sum(axes, keepdims=True)) / (m * np.sqrt(var.reshape(c) + 1e-3))
    got = forward("batch_norm_train_grad", arrays, {"eps": 1e-3}, "cpu")
    np.testing.assert_allclose(got[0], dx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got[1], (dy * xhat).sum(axes), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got[2], dy.sum(axes), rtol=1e-4, atol=1e-4)


@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 40)),
       dtype=st.sampled_from([np.float32, np.float64]),
       offset=st.sampled_from([0.0, 1e3, -3e4]), spread=st.sampled_from([1e-2, 1.0, 1e3]),
       seed=st.integers(0, 2**16))
def test_the_dtype_lane_batch_norm_kernel_matches_float64(shape, dtype, offset, spread, seed):
    """norm_train.py sums each row in the input's dtype and combines the rows in float64
    (Chan's formula): statistics and output within 1e-4 of a float64 oracle,
    including a mean far from zero against the spread (the shifted sums' case)."""
    from graphcnn.backends.cpu.kernels import norm_train
    from graphcnn.backends.cpu.registry import launch

    rng = np.random.default_rng(seed)
    assume(shape[0] * shape[2] > 1)
    x = (offset + spread * rng.standard_normal(shape)).astype(dtype)
    weight, bias = (rng.standard_normal(shape[1]).astype(dtype) for _ in range(2))
    y, mean, var = np.empty_like(x), np.empty(shape[1], dtype), np.empty(shape[1], dtype)
    launch(norm_train.batch_norm_train_fast, x, weight, bias, 1e-5, 0, 0.0, 0.0, y, mean, var)
    want_y, want_mean, want_var = numpy_batch_norm_train(x, weight, bias, 1e-5)
    np.testing.assert_allclose(mean, want_mean, rtol=1e-6, atol=1e-6 * spread)
    np.testing.assert_allclose(var, want_var, rtol=1e-4, atol=0)
    np.testing.assert_allclose(y, want_y, rtol=1e-4, atol=1e-4 * np.abs(want_y).max())


def test_batch_norm_train_and_its_gradient_fall_back_where_float32_overflows():
    """Squares of 1e20 overflow float32 (not float64): the channel is computed again in
    float64, as the reference; NaN and Inf channels too, the others staying finite."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 6)).astype(np.float32)
    x[:, 0] *= 1e20
    x[1, 1, 2], x[0, 2, 5] = np.nan, np.inf
    weight, bias = np.ones(4, np.float32), np.zeros(4, np.float32)
    got = forward("batch_norm_train", [x, weight, bias], {"eps": 1e-5}, "cpu")
    with np.errstate(invalid="ignore"):
        want = forward("batch_norm_train", [x, weight, bias], {"eps": 1e-5}, "reference")
    for o, w in zip(got, want):
        np.testing.assert_array_equal(np.isnan(o), np.isnan(w))
        np.testing.assert_array_equal(np.isinf(o), np.isinf(w))
        finite = np.isfinite(w)
        np.testing.assert_allclose(o[finite], w[finite], rtol=1e-4, atol=1e-4)
    assert np.isfinite(got[0][:, 0]).all() and np.isnan(got[0][:, 1]).all()
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dy[:, 3] *= 1e37   # a * dy overflows float32 in channel 3
    arrays = [dy, x, weight, got[1], got[2]]
    mine = forward("batch_norm_train_grad", arrays, {"eps": 1e-5}, "cpu")
    with np.errstate(invalid="ignore", over="ignore"):
        want = forward("batch_norm_train_grad", arrays, {"eps": 1e-5}, "reference")
    for o, w in zip(mine, want):
        np.testing.assert_array_equal(np.isnan(o), np.isnan(w))
        np.testing.assert_array_equal(np.isinf(o), np.isinf(w))
        finite = np.isfinite(w)
        np.testing.assert_allclose(o[finite], w[finite], rtol=1e-4, atol=1e-4)


def test_batch_norm_train_matches_mode_rule_update():
    """The DSL's training lowering: batch statistics out, running statistics blended."""
    import graphcnn as gc
    from graphcnn import nn

    x = gc.Input((3, 4, 4))
    model = gc.Model(x, nn.BatchNorm2d(3, name="bn")(x))
    g = model.graph(batch_size=5, training=True)
    assert [n.op for n in g.nodes if n.op.startswith("batch_norm")] == ["batch_norm_train"]
    assert "state:bn.running_var" in g.output_names


# ---- dropout --------------------------------------------------------------------------

def seed_array(seed: int) -> np.ndarray:
    return np.asarray(seed, dtype=np.int64)


@given(shape=st.lists(st.integers(1, 6), min_size=1, max_size=4).map(tuple),
       p=st.sampled_from([0.1, 0.5, 0.8]), salt=st.integers(0, 5),
       seed=st.integers(-2**63, 2**63 - 1))
def test_dropout(shape, p, salt, seed):
    x = np.random.default_rng(abs(seed) % 2**32).uniform(0.5, 2.0, shape).astype(np.float32)
    attrs = {"p": p, "salt": salt}
    want = forward("dropout", [x, seed_array(seed)], attrs, "reference")[0]
    got = forward("dropout", [x, seed_array(seed)], attrs, "cpu")[0]
    np.testing.assert_array_equal(got != 0, want != 0)  # the identical mask
    np.testing.assert_array_equal(got, want)            # and the identical values
    kept = want != 0
    np.testing.assert_allclose(want[kept], x[kept] / np.float32(1 - p), rtol=1e-6)
    check_op("dropout", [x, seed_array(seed)], attrs)


def test_dropout_statistics_and_determinism():
    x = np.ones((64, 32, 32), np.float32)
    for p in (0.2, 0.5):
        y = forward("dropout", [x, seed_array(7)], {"p": p}, "cpu")[0]
        keep = y != 0
        assert abs(keep.mean() - (1 - p)) < 0.01
        assert abs(y.mean() - 1.0) < 0.02
    a = forward("dropout", [x, seed_array(7)], {"p": 0.5}, "cpu")[0]
    b = forward("dropout", [x, seed_array(7)], {"p": 0.5, "salt": 1}, "cpu")[0]
    c = forward("dropout", [x, seed_array(8)], {"p": 0.5}, "cpu")[0]
    assert np.array_equal(a, forward("dropout", [x, seed_array(7)], {"p": 0.5}, "cpu")[0])
    assert 0.4 < np.mean((a != 0) == (b != 0)) < 0.6   # salts give independent masks
    assert 0.4 < np.mean((a != 0) == (c != 0)) < 0.6   # so do seeds


def test_dropout_p_zero_is_identity_and_gradient_uses_same_mask():
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    for backend in ("reference", "cpu"):
        y = forward("dropout", [x, seed_array(3)], {"p": 0.0}, backend)[0]
        np.testing.assert_array_equal(y, x)
    g = Graph()
    xv, sv = g.input("x", (3, 5)), g.input("seed", (), "int64")
    y = g.add("dropout", [xv, sv], p=0.5, salt=2)
    (dx,) = grad(g, g.add("sum_to", [y], shape=()), [xv])
    g.set_outputs([y, dx])
    for backend in ("reference", "cpu"):
        yv, dxv = run_graph(g, backend, [xv, sv], [x, seed_array(11)])
        np.testing.assert_array_equal(dxv != 0, yv != 0)
        np.testing.assert_allclose(dxv[dxv != 0], 2.0)


def test_dropout_without_seed_records_for_the_dsl():
    g = Graph()
    x = g.input("x", (2, 3))
    y = g.add("dropout", [x], p=0.3)
    assert y.node.attrs == {"p": 0.3, "salt": 0}
    check_forward("dropout", [np.ones((4, 5), np.float32)], {"p": 0.3})


def test_build_errors():
    g = Graph()
    x = g.input("x", (2, 3, 4, 4))
    w = g.input("w", (3,))
    bad = g.input("bad", (4,))
    with pytest.raises(GraphBuildError, match=r"running_var must be f.* shape \(3,\)"):
        g.add("batch_norm", [x, w, w, w, bad])
    with pytest.raises(GraphBuildError, match="at least 2 axes"):
        g.add("batch_norm_train", [g.input("v", (3,)), w, w])
    with pytest.raises(GraphBuildError, match="eps must be >= 0"):
        g.add("batch_norm_train", [x, w, w], eps=-1)
    with pytest.raises(GraphBuildError, match=r"p must be in \[0, 1\)"):
        g.add("dropout", [x], p=1.0)
    with pytest.raises(GraphBuildError, match="seed must be an int64 scalar"):
        g.add("dropout", [x, g.input("s", (1,), "int64")], p=0.5)
    with pytest.raises(GraphBuildError, match="missing required attribute 'p'"):
        g.add("dropout", [x])


@pytest.mark.parametrize("layer, input_shape, size", [
    ("2d", (3, 1, 1), "[1, 4, 1, 1]"),   # batch 1, 1x1 maps
    ("1d", (3,), "[1, 4]"),              # BatchNorm1d, batch 1
])
def test_batch_norm_train_one_value_per_channel_is_an_error(layer, input_shape, size):
    """As PyTorch: training batch norm on one value per channel is refused (its variance
    is 0), found when the training graph is built; inference with batch 1 is fine."""
    import graphcnn as gc
    from graphcnn import nn

    if layer == "2d":
        model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.Flatten(),
                              input_shape=input_shape)
    else:
        model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), input_shape=input_shape)
    with pytest.raises(GraphBuildError, match=r"batch_norm_train: Expected more than 1 value "
                       r"per channel when training, got input size " + re.escape(size)):
        gc.value_and_grad(model, loss="mse", batch_size=1, backend="reference")
    gc.value_and_grad(model, loss="mse", batch_size=2, backend="reference")
    gc.compile(model, batch_size=1, backend="reference")
