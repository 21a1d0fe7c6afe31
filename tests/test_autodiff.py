"""Whole-graph gradients: fan-out, broadcasting, deep chains, cpu vs reference, and
finite differences in float64."""
import numpy as np
import pytest

import graphcnn as gc
from graphcnn import nn
from graphcnn.autodiff import grad
from graphcnn.ir import Graph
from graphcnn.runtime.executable import make_runner


def fd_check(model: gc.Model, x: np.ndarray, y: np.ndarray, loss: str = "cross_entropy",
             eps: float = 1e-6) -> None:
    """value_and_grad in float64 against central differences along random directions."""
    step = gc.value_and_grad(model, loss=loss, batch_size=len(x), backend="reference",
                             dtype="float64")
    x = x.astype(np.float64)
    _, grads = step(x, y)
    params = model.parameters()
    rng = np.random.default_rng(0)
    for name, g in grads.items():
        direction = rng.standard_normal(g.shape)
        original = params[name].copy()
        # parameters are float32 in the model: perturb in float64 through a shadow copy
        values = []
        for sign in (1, -1):
            shadow = {k: v.astype(np.float64) for k, v in params.items()}
            shadow[name] = original.astype(np.float64) + sign * eps * direction
            step.executable._param_source = lambda s=shadow: s
            values.append(step(x, y)[0])
        step.executable._param_source = lambda: {k: v.astype(np.float64)
                                                 for k, v in params.items()}
        numeric = (values[0] - values[1]) / (2 * eps)
        predicted = float(np.sum(g * direction))
        assert abs(numeric - predicted) <= 1e-6 + 1e-5 * abs(numeric), (name, numeric, predicted)


def residual_mlp() -> gc.Model:
    gc.manual_seed(0)
    x = gc.Input((5,), name="x")
    h = gc.tanh(nn.Linear(5, 5, name="a")(x))
    h = h + x * 0.5                                  # fan-out of x, broadcast scalar
    h = gc.sigmoid(nn.Linear(5, 4, name="b")(h)) * gc.relu(nn.Linear(5, 4, name="c")(h))
    return gc.Model(x, nn.Linear(4, 3, name="d")(h), name="residual")


def test_model_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    fd_check(residual_mlp(), rng.standard_normal((4, 5)).astype(np.float32),
             np.array([0, 2, 1, 2]))


def test_mse_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    model = residual_mlp()
    fd_check(model, rng.standard_normal((3, 5)).astype(np.float32),
             rng.standard_normal((3, 3)), loss="mse")


def test_cpu_gradients_equal_reference():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((6, 5)).astype(np.float32), rng.integers(0, 3, 6)
    model = residual_mlp()
    ref_loss, ref = gc.value_and_grad(model, batch_size=6, backend="reference")(x, y)
    cpu_loss, cpu = gc.value_and_grad(model, batch_size=6, backend="cpu")(x, y)
    assert np.isclose(ref_loss, cpu_loss, rtol=1e-5)
    assert list(ref) == list(model.trainable_parameters())
    for k in ref:
        np.testing.assert_allclose(cpu[k], ref[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_fan_out_accumulates():
    g = Graph()
    x = g.input("x", (3,), "float64")
    y = g.add("mul", [x, x])                            # d/dx sum(x*x + x) = 2x + 1
    s = g.add("sum_to", [g.add("add", [y, x])], shape=())
    (dx,) = grad(g, s, [x])
    g.set_outputs([dx])
    value = np.array([1.0, -2.0, 0.5])
    out = make_runner(g, "reference").run({x.id: value})[0]
    np.testing.assert_allclose(out, 2 * value + 1)


def test_unreachable_parameter_gets_zero_gradient():
    g = Graph()
    x = g.input("x", (2,), "float64")
    unused = g.param("unused", (3,), "float64")
    s = g.add("sum_to", [x], shape=())
    (dx, du) = grad(g, s, [x, unused])
    g.set_outputs([du])
    out = make_runner(g, "reference").run({x.id: np.ones(2), unused.id: np.ones(3)})[0]
    np.testing.assert_array_equal(out, np.zeros(3))


def test_deep_chain_has_no_recursion_limit():
    x = gc.Input((4,), name="x")
    h = x
    for _ in range(3000):
        h = gc.tanh(h)
    model = gc.Model(x, nn.Linear(4, 2)(h))
    step = gc.value_and_grad(model, batch_size=2, backend="reference")
    loss, grads = step(np.ones((2, 4), np.float32), np.array([0, 1]))
    assert np.isfinite(loss) and grads["linear_0.weight"].shape == (2, 4)


def test_gradient_with_non_scalar_loss_is_rejected():
    g = Graph()
    x = g.input("x", (2,))
    with pytest.raises(ValueError, match="scalar"):
        grad(g, x, [x])
