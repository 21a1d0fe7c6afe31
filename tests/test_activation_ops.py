"""Unary math, the smooth activations, pow, maximum and minimum (graphcnn/ops/activations.py,
binary_math.py): cpu vs reference, gradients vs finite differences (float64), values and
gradients vs PyTorch, NaN and Inf as PyTorch gives them, and the layers."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from op_check import check_op, forward, gradients

import graphcnn as gc
from graphcnn import nn

try:
    import torch
    TF = torch.nn.functional
except ImportError:   # PyTorch is an optional peer: the comparisons with it skip, the rest runs
    torch = TF = None
needs_torch = pytest.mark.skipif(torch is None, reason="compares with PyTorch, not installed "
                                                        "(pip install torch==2.13.0)")

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)

# op, attrs, torch's function, the inputs' domain ("any", "pos": > 0, "away": |x| >= 0.1)
UNARY = [
    ("abs", {}, lambda t: torch.abs(t), "away"),
    ("neg", {}, lambda t: torch.neg(t), "any"),
    ("exp", {}, lambda t: torch.exp(t), "any"),
    ("log", {}, lambda t: torch.log(t), "pos"),
    ("sqrt", {}, lambda t: torch.sqrt(t), "pos"),
    ("reciprocal", {}, lambda t: torch.reciprocal(t), "away"),
    ("erf", {}, lambda t: torch.erf(t), "any"),
    ("elu", {"alpha": 0.7, "scale": 1.0}, lambda t: TF.elu(t, 0.7), "away"),
    ("elu", {"alpha": 1.6732632423543772, "scale": 1.0507009873554805},
     lambda t: TF.selu(t), "away"),
    ("softplus", {"beta": 1.0, "threshold": 20.0}, lambda t: TF.softplus(t), "any"),
    ("softplus", {"beta": 2.0, "threshold": 1.5},
     lambda t: TF.softplus(t, beta=2.0, threshold=1.5), "any"),
    ("softsign", {}, lambda t: TF.softsign(t), "any"),
    ("gelu", {}, lambda t: TF.gelu(t), "any"),
    ("gelu_tanh", {}, lambda t: TF.gelu(t, approximate="tanh"), "any"),
    ("mish", {}, lambda t: TF.mish(t), "any"),
]
IDS = [f"{op}-{i}" for i, (op, *_) in enumerate(UNARY)]


def sample(rng, shape, domain):
    x = rng.uniform(-2.5, 2.5, size=shape)
    if domain == "pos":
        x = rng.uniform(0.2, 3.0, size=shape)
    elif domain == "away":
        x = rng.uniform(0.1, 2.5, size=shape) * rng.choice([-1.0, 1.0], size=shape)
    if domain == "away" or domain == "any":   # keep finite differences off softplus's switch
        x = np.where(np.abs(2.0 * x - 1.5) < 0.02, x + 0.1, x)
    return x.astype(np.float32)


@pytest.mark.parametrize("op,attrs,_,domain", UNARY, ids=IDS)
@given(shape=shapes, seed=st.integers(0, 2**16))
def test_unary_cpu_and_finite_differences(op, attrs, _, domain, shape, seed):
    check_op(op, [sample(np.random.default_rng(seed), shape, domain)], attrs)


@needs_torch
@pytest.mark.parametrize("op,attrs,fn,domain", UNARY, ids=IDS)
def test_unary_values_and_gradients_match_torch(op, attrs, fn, domain):
    x = sample(np.random.default_rng(7), (3, 5), domain)
    t = torch.tensor(x.astype(np.float64), requires_grad=True)
    c = np.random.default_rng(0).standard_normal((3, 5))   # op_check's loss weights
    y = fn(t)
    (y * torch.tensor(c)).sum().backward()
    for backend in ("reference", "cpu"):
        (got,) = forward(op, [x], attrs, backend, dtype="float64")
        np.testing.assert_allclose(got, y.detach().numpy(), rtol=1e-10, atol=1e-12,
                                   err_msg=f"{op} on {backend}")
        _, grad = gradients(op, [x], attrs, backend, dtype="float64")
        np.testing.assert_allclose(grad, t.grad.numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=f"{op} gradient on {backend}")
    (got32,) = forward(op, [x], attrs, "cpu")
    np.testing.assert_allclose(got32, fn(torch.tensor(x)).numpy(), rtol=2e-6, atol=1e-6)


SPECIAL = np.float32([[np.nan, -np.inf, -100.0, -30.0, -2.0, -0.0, 0.0, 0.5, 3.0, 30.0,
                       100.0, np.inf]])


@needs_torch
@pytest.mark.parametrize("op,attrs,fn,_", UNARY, ids=IDS)
def test_nan_and_inf_as_torch(op, attrs, fn, _):
    """NaN in, NaN out; infinities, zeros of both signs and overflowing inputs give what
    PyTorch gives, on the cpu's generated kernels and the reference alike. (PyTorch in
    float64: its float32 gelu says NaN at +inf, where the formula and its float64 say inf.)"""
    with np.errstate(over="ignore"):   # exp(100) is inf in float32
        want = fn(torch.tensor(SPECIAL.astype(np.float64))).numpy().astype(np.float32)
    for backend in ("reference", "cpu"):
        (got,) = forward(op, [SPECIAL], attrs, backend)
        # atol: mish(-100) is a float32 subnormal, with few significant bits
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-40, equal_nan=True,
                                   err_msg=f"{op} on {backend}")


@needs_torch
def test_special_gradients_as_torch():
    """abs at 0 and NaN; elu, softplus, mish and gelu at the infinities. softsign's
    derivative 1 / (1 + |x|)^2 is 0 at the infinities, where PyTorch's autograd of
    x / (1 + |x|) says NaN (inf / inf): those two points are left out for it."""
    for op, attrs, fn in [("abs", {}, torch.abs), ("elu", {"alpha": 1.0, "scale": 1.0}, TF.elu),
                          ("softplus", {"beta": 1.0, "threshold": 20.0}, TF.softplus),
                          ("mish", {}, TF.mish), ("gelu", {}, TF.gelu),
                          ("softsign", {}, TF.softsign)]:
        t = torch.tensor(SPECIAL.astype(np.float64), requires_grad=True)
        fn(t).backward(torch.ones_like(t))
        g = np.ones_like(SPECIAL)
        for backend in ("reference", "cpu"):
            (got,) = forward(f"{op}_grad", [g, SPECIAL], attrs, backend, dtype="float64")
            want = t.grad.numpy()
            if op == "softsign":
                at_inf = np.isinf(SPECIAL)
                assert (got[at_inf] == 0).all()
                got, want = got[~at_inf], want[~at_inf]
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-300,
                                       equal_nan=True, err_msg=f"{op}_grad on {backend}")


# ---- pow, maximum, minimum ----------------------------------------------------------------

@needs_torch
@pytest.mark.parametrize("shapes_", [((3, 4), ()), ((2, 3, 4), (4,)), ((3, 1), (1, 4))])
def test_pow_broadcasts_and_differentiates_both_inputs(shapes_):
    rng = np.random.default_rng(1)
    a = rng.uniform(0.3, 2.0, shapes_[0]).astype(np.float32)
    b = rng.uniform(-1.5, 2.5, shapes_[1]).astype(np.float32)
    check_op("pow", [a, b])
    ta = torch.tensor(a.astype(np.float64), requires_grad=True)
    tb = torch.tensor(b.astype(np.float64), requires_grad=True)
    y = torch.pow(ta, tb)
    c = np.random.default_rng(0).standard_normal(y.shape)
    (y * torch.tensor(c)).sum().backward()
    _, ga, gb = gradients("pow", [a, b], {}, "cpu", dtype="float64")
    np.testing.assert_allclose(ga, ta.grad.numpy(), rtol=1e-9)
    np.testing.assert_allclose(gb, tb.grad.numpy(), rtol=1e-9)


@needs_torch
def test_pow_special_values_as_torch():
    """Negative bases with whole and fractional exponents, 0 ** negative, NaN, and the
    exponent's gradient at a zero base (PyTorch masks it to 0)."""
    a = np.float32([-8.0, -8.0, 0.0, 0.0, 0.0, np.nan, 1.0, np.inf, -np.inf, 2.0])
    b = np.float32([3.0, 0.5, -1.0, 0.0, 2.0, 0.0, np.nan, -1.0, 3.0, np.inf])
    want = torch.pow(torch.tensor(a), torch.tensor(b)).numpy()
    for backend in ("reference", "cpu"):
        (got,) = forward("pow", [a, b], {}, backend)
        np.testing.assert_array_equal(got, want)
    a64, b64 = np.float64([0.0, 0.0, 2.0]), np.float64([2.0, 0.0, 3.0])
    ta = torch.tensor(a64, requires_grad=True)
    tb = torch.tensor(b64, requires_grad=True)
    torch.pow(ta, tb).sum().backward()
    for backend in ("reference", "cpu"):
        (got,) = forward("pow_exponent_grad", [np.ones(3), a64, a64 ** b64], {}, backend,
                         dtype="float64")
        np.testing.assert_array_equal(got, tb.grad.numpy())


@needs_torch
@pytest.mark.parametrize("op", ["maximum", "minimum"])
def test_maximum_minimum_as_torch(op):
    fn = getattr(torch, op)
    """Broadcasting, NaN from either side, and a tie splitting the gradient in halves."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((2, 3, 4)).astype(np.float32)
    b = rng.standard_normal((3, 1)).astype(np.float32)
    check_op(op, [a, b])
    a[0, 0, :3] = [np.nan, 5.0, b[0, 0]]          # NaN, a clear winner, a tie
    b[1, 0] = np.nan
    ta = torch.tensor(a.astype(np.float64), requires_grad=True)
    tb = torch.tensor(b.astype(np.float64), requires_grad=True)
    y = fn(ta, tb)
    y.sum().backward()
    for backend in ("reference", "cpu"):
        (got,) = forward(op, [a, b], {}, backend)
        np.testing.assert_array_equal(got, y.detach().numpy().astype(np.float32))
        g = gradients(op, [a, b], {}, backend, dtype="float64")
        graph_weights = np.random.default_rng(0).standard_normal(y.shape)
        ta.grad, tb.grad = None, None
        (fn(ta, tb) * torch.tensor(graph_weights)).sum().backward()
        np.testing.assert_allclose(g[1], ta.grad.numpy(), rtol=1e-12, equal_nan=True)
        np.testing.assert_allclose(g[2], tb.grad.numpy(), rtol=1e-12, equal_nan=True)


# ---- the layers and functional forms -----------------------------------------------------

LAYERS = [(nn.ELU(0.5), ("ELU", 0.5)), (nn.SELU(), ("SELU",)),
          (nn.GELU(), ("GELU",)), (nn.GELU("tanh"), ("GELU", "tanh")),
          (nn.Mish(), ("Mish",)), (nn.Softplus(2.0, 3.0), ("Softplus", 2.0, 3.0)),
          (nn.Softsign(), ("Softsign",))]


@needs_torch
@pytest.mark.parametrize("ours,spec", LAYERS, ids=[t[0] for _, t in LAYERS])
def test_layers_as_torch_in_a_fused_conv(ours, spec):
    theirs = getattr(torch.nn, spec[0])(*spec[1:])
    """After a convolution, where the activation is the conv's fused epilogue."""
    gc.manual_seed(0)
    x = gc.Input((2, 5, 5), name="x")
    conv = nn.Conv2d(2, 3, 3, padding=1)
    model = gc.Model(x, ours(conv(x)))
    tconv = torch.nn.Conv2d(2, 3, 3, padding=1)
    weight, bias = model.parameters().values()
    with torch.no_grad():
        tconv.weight.copy_(torch.tensor(weight))
        tconv.bias.copy_(torch.tensor(bias))
    data = np.random.default_rng(0).standard_normal((2, 2, 5, 5)).astype(np.float32)
    exe = gc.compile(model, batch_size=2)
    assert exe.report()["kernels"] == 1
    want = theirs(tconv(torch.tensor(data))).detach().numpy()
    np.testing.assert_allclose(exe(data), want, rtol=1e-5, atol=1e-5)


@needs_torch
def test_functional_forms_and_pow_operator():
    x = gc.Input((4,), name="x")
    y = gc.maximum(gc.exp(x), gc.sqrt(gc.abs(x))) + gc.minimum(gc.log(gc.abs(x) + 1.0), x)
    y = y + gc.pow(gc.abs(x), 1.5) + x ** 2.0 + gc.erf(x) + gc.neg(gc.reciprocal(x + 5.0))
    y = y + gc.elu(x, 0.3) + gc.selu(x) + gc.gelu(x, approximate="tanh") + gc.mish(x)
    y = y + gc.softplus(x, beta=0.5) + gc.softsign(x)
    data = np.float32([[-1.5, -0.2, 0.4, 2.0]])
    got = gc.compile(gc.Model(x, y), batch_size=1)(data)
    t = torch.tensor(data)
    want = torch.maximum(t.exp(), t.abs().sqrt()) + torch.minimum((t.abs() + 1).log(), t)
    want = want + t.abs() ** 1.5 + t ** 2 + torch.erf(t) - 1 / (t + 5)
    want = want + TF.elu(t, 0.3) + TF.selu(t) + TF.gelu(t, approximate="tanh") + TF.mish(t)
    want = want + TF.softplus(t, beta=0.5) + TF.softsign(t)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)


def test_argument_errors_name_the_layer():
    with pytest.raises(gc.GraphBuildError, match="approximate must be 'none' or 'tanh'"):
        nn.GELU("erf")(gc.Input((3,)))
    with pytest.raises(gc.GraphBuildError, match="Softplus: beta"):
        nn.Softplus(beta=0.0)
