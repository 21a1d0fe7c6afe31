"""LocalResponseNorm, GroupNorm, InstanceNorm2d, PixelShuffle/Unshuffle, ReflectionPad2d
and ReplicationPad2d against torch (forward and the gradients of the input and of every
parameter, float64, reference and cpu backends; float32 forward on cpu); the ops they
add (group_norm, pow_scalar) against finite differences; and their build errors."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from layer_torch import layer_outputs, torch_outputs
from op_check import check_op, forward

import graphcnn as gc
from graphcnn import nn
from graphcnn.errors import GraphBuildError

try:
    import torch
except ImportError:   # PyTorch is an optional peer: the comparisons with it skip, the rest runs
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="compares with PyTorch, not installed "
                                                        "(pip install torch==2.13.0)")


def _pair(rng: np.random.Generator, ours, theirs, shape: tuple[int, ...]) -> None:
    """Give the two layers the same random parameters (graphcnn keeps them in float32:
    torch gets the float32 values, in float64)."""
    params = ours._parameters
    theirs.double()
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            params[name].data[...] = rng.standard_normal(p.shape)
            p[...] = torch.tensor(params[name].data.astype(np.float64))


CASES = [  # (name, graphcnn layer, torch layer, input shape)
    ("lrn_odd", lambda: nn.LocalResponseNorm(3, 0.1, 0.75, 2.0),
     lambda: torch.nn.LocalResponseNorm(3, 0.1, 0.75, 2.0), (2, 5, 3, 4)),
    ("lrn_even", lambda: nn.LocalResponseNorm(4, 0.3, 0.6, 1.0),
     lambda: torch.nn.LocalResponseNorm(4, 0.3, 0.6, 1.0), (2, 6, 2, 3)),
    ("lrn_wide", lambda: nn.LocalResponseNorm(7),
     lambda: torch.nn.LocalResponseNorm(7), (1, 3, 2, 2)),
    ("groupnorm", lambda: nn.GroupNorm(2, 6), lambda: torch.nn.GroupNorm(2, 6), (3, 6, 2, 3)),
    ("groupnorm_1group", lambda: nn.GroupNorm(1, 4, eps=1e-3),
     lambda: torch.nn.GroupNorm(1, 4, eps=1e-3), (2, 4, 3, 1)),
    ("groupnorm_plain", lambda: nn.GroupNorm(3, 3, affine=False),
     lambda: torch.nn.GroupNorm(3, 3, affine=False), (2, 3, 2, 2)),
    ("instancenorm", lambda: nn.InstanceNorm2d(4), lambda: torch.nn.InstanceNorm2d(4),
     (2, 4, 3, 3)),
    ("instancenorm_affine", lambda: nn.InstanceNorm2d(3, eps=1e-4, affine=True),
     lambda: torch.nn.InstanceNorm2d(3, eps=1e-4, affine=True), (2, 3, 2, 5)),
    ("pixelshuffle", lambda: nn.PixelShuffle(2), lambda: torch.nn.PixelShuffle(2),
     (2, 8, 3, 2)),
    ("pixelshuffle3", lambda: nn.PixelShuffle(3), lambda: torch.nn.PixelShuffle(3),
     (1, 9, 2, 2)),
    ("pixelunshuffle", lambda: nn.PixelUnshuffle(2), lambda: torch.nn.PixelUnshuffle(2),
     (2, 3, 4, 6)),
    ("reflect", lambda: nn.ReflectionPad2d((1, 2, 3, 0)),
     lambda: torch.nn.ReflectionPad2d((1, 2, 3, 0)), (2, 3, 4, 5)),
    ("reflect_int", lambda: nn.ReflectionPad2d(1), lambda: torch.nn.ReflectionPad2d(1),
     (1, 2, 2, 3)),
    ("replicate", lambda: nn.ReplicationPad2d((3, 2, 0, 1)),
     lambda: torch.nn.ReplicationPad2d((3, 2, 0, 1)), (2, 3, 4, 5)),
    ("replicate_3d_input", lambda: nn.ReplicationPad2d(2),
     lambda: torch.nn.ReplicationPad2d(2), (2, 1, 3)),
]


@needs_torch
@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_layer_matches_torch_forward_and_gradients(case, backend):
    name, make_ours, make_theirs, shape = case
    rng = np.random.default_rng(len(name))
    ours, theirs = make_ours(), make_theirs()
    _pair(rng, ours, theirs, shape)
    x = rng.standard_normal(shape)
    cot = rng.standard_normal(theirs(torch.tensor(x)).shape)
    want_y, want_grads = torch_outputs(theirs, x, cot)
    y, grads = layer_outputs(ours, x, cot, backend, "float64")
    np.testing.assert_allclose(y, want_y, rtol=1e-9, atol=1e-9)
    assert set(want_grads) == {"input"} | {k.rsplit(".", 1)[-1] for k in grads
                                           if k != "input"}
    for key, got in grads.items():
        want = want_grads[key if key == "input" else key.rsplit(".", 1)[-1]]
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-9, err_msg=key)


@needs_torch
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_layer_matches_torch_in_float32_on_cpu(case):
    name, make_ours, make_theirs, shape = case
    rng = np.random.default_rng(7)
    ours, theirs = make_ours(), make_theirs()
    _pair(rng, ours, theirs, shape)
    x = rng.standard_normal(shape).astype(np.float32)
    want = theirs.float()(torch.tensor(x)).detach().numpy()
    inp = gc.Input(shape[1:])
    got = gc.compile(gc.Model(inp, ours(inp)), batch_size=shape[0], backend="cpu")(x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@needs_torch
def test_group_norm_trains_in_a_training_step():
    """The layers in a model trained with value_and_grad: the parameters' gradients agree
    with torch's through a conv."""
    rng = np.random.default_rng(3)
    x = gc.Input((2, 4, 4))
    conv, norm = nn.Conv2d(2, 4, 3, padding=1), nn.GroupNorm(2, 4)
    y = nn.PixelShuffle(2)(nn.ReflectionPad2d(1)(norm(conv(x))))
    model = gc.Model(x, y)
    images = rng.standard_normal((2, 2, 4, 4))
    target = rng.standard_normal((2, 1, 12, 12))
    step = gc.value_and_grad(model, loss="mse", batch_size=2, backend="cpu", dtype="float64")
    loss, grads = step(images, target)
    params = model.parameters()
    tconv = torch.nn.Conv2d(2, 4, 3, padding=1).double()
    tnorm = torch.nn.GroupNorm(2, 4).double()
    with torch.no_grad():
        tconv.weight[...] = torch.tensor(params["conv2d_0.weight"])
        tconv.bias[...] = torch.tensor(params["conv2d_0.bias"])
    out = torch.nn.PixelShuffle(2)(torch.nn.ReflectionPad2d(1)(tnorm(tconv(
        torch.tensor(images)))))
    tloss = torch.nn.functional.mse_loss(out, torch.tensor(target))
    tloss.backward()
    assert loss == pytest.approx(float(tloss.detach()), rel=1e-9)
    np.testing.assert_allclose(grads["conv2d_0.weight"], tconv.weight.grad.numpy(), rtol=1e-7,
                               atol=1e-10)
    np.testing.assert_allclose(grads["groupnorm_0.weight"], tnorm.weight.grad.numpy(),
                               rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("shape,groups", [((2, 6, 3, 2), 3), ((3, 4, 5), 4), ((2, 4), 2),
                                          ((1, 3, 1, 1), 1)])
def test_group_norm_op_finite_differences_and_cpu(shape, groups):
    rng = np.random.default_rng(sum(shape))
    channels = shape[1]
    arrays = [rng.standard_normal(shape), rng.uniform(0.5, 1.5, channels),
              rng.standard_normal(channels)]
    check_op("group_norm", arrays, {"num_groups": groups, "eps": 1e-3})


@pytest.mark.parametrize("exponent", [-0.75, 2.0, 0.5, 0.0])
def test_pow_scalar_op(exponent):
    x = np.random.default_rng(1).uniform(0.5, 2.0, (3, 4, 5))
    check_op("pow_scalar", [x], {"exponent": exponent})


@needs_torch
@pytest.mark.parametrize("exponent", [-0.75, 2.0, 0.5, -0.5, 3.0, -3.0, 1.5])
def test_pow_scalar_special_values_follow_torch(exponent):
    """torch.pow's NaNs, infinities and signed zeros: sqrt and rsqrt for +-0.5 (NaN at
    -inf), C's pow otherwise ((-0.0) ** -3 = -inf)."""
    x = np.float32([-1e17, -3e38, -1.0, -1e-40, -0.0, 0.0, 1e-40, np.inf, -np.inf, np.nan,
                    2.0, 3e38])
    want = torch.pow(torch.tensor(x), exponent).numpy()
    for backend in ("reference", "cpu"):
        (got,) = forward("pow_scalar", [x], {"exponent": exponent}, backend)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0, equal_nan=True)
        finite_or_inf = ~np.isnan(want)
        assert (np.signbit(got) == np.signbit(want))[finite_or_inf].all(), (got, want)


@pytest.mark.parametrize("make,shape,match", [
    (lambda: nn.PixelShuffle(2), (6, 2, 2), "not divisible by 4"),
    (lambda: nn.PixelUnshuffle(2), (1, 3, 4), "not divisible by 2"),
    (lambda: nn.ReflectionPad2d(3), (1, 3, 5), "below the axis size 3"),
    (lambda: nn.GroupNorm(2, 4), (3, 2, 2), "got an input of shape"),
    (lambda: nn.InstanceNorm2d(3), (3, 1, 1), "more than 1 spatial element"),
    (lambda: nn.LocalResponseNorm(2), (3,), "at least 3 axes"),
])
def test_build_errors_name_the_layer_and_shape(make, shape, match):
    x = gc.Input(shape)
    with pytest.raises(GraphBuildError, match=match):
        make()(x)


def test_constructor_errors():
    with pytest.raises(GraphBuildError, match="divisible by num_groups"):
        nn.GroupNorm(3, 4)
    with pytest.raises(GraphBuildError, match="upscale_factor"):
        nn.PixelShuffle(0)


@st.composite
def layer_configs(draw):
    """A random layer of the six kinds with a fitting random input shape."""
    kind = draw(st.sampled_from(["lrn", "group", "instance", "shuffle", "unshuffle",
                                 "reflect", "replicate"]))
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(2, 4)), draw(st.integers(2, 4))
    if kind == "lrn":
        c, size = draw(st.integers(1, 6)), draw(st.integers(1, 6))
        alpha, beta = draw(st.floats(0.01, 1.0)), draw(st.floats(0.1, 1.0))
        k = draw(st.floats(0.5, 2.0))
        return ((n, c, h, w), nn.LocalResponseNorm(size, alpha, beta, k),
                torch.nn.LocalResponseNorm(size, alpha, beta, k))
    if kind == "group":
        groups, per = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        affine = draw(st.booleans())
        return ((n, groups * per, h, w), nn.GroupNorm(groups, groups * per, affine=affine),
                torch.nn.GroupNorm(groups, groups * per, affine=affine))
    if kind == "instance":
        c, affine = draw(st.integers(1, 4)), draw(st.booleans())
        return ((n, c, h, w), nn.InstanceNorm2d(c, affine=affine),
                torch.nn.InstanceNorm2d(c, affine=affine))
    if kind in ("shuffle", "unshuffle"):
        r, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        if kind == "shuffle":
            return ((n, c * r * r, h, w), nn.PixelShuffle(r), torch.nn.PixelShuffle(r))
        return ((n, c, h * r, w * r), nn.PixelUnshuffle(r), torch.nn.PixelUnshuffle(r))
    limit = (h - 1, w - 1) if kind == "reflect" else (4, 4)
    pads = (draw(st.integers(0, limit[1])), draw(st.integers(0, limit[1])),
            draw(st.integers(0, limit[0])), draw(st.integers(0, limit[0])))
    ours = nn.ReflectionPad2d(pads) if kind == "reflect" else nn.ReplicationPad2d(pads)
    theirs = torch.nn.ReflectionPad2d(pads) if kind == "reflect" else \
        torch.nn.ReplicationPad2d(pads)
    return (n, draw(st.integers(1, 3)), h, w), ours, theirs


@needs_torch
@settings(max_examples=25, deadline=None)
@given(config=layer_configs(), seed=st.integers(0, 2**16))
def test_random_layers_match_torch_on_cpu(config, seed):
    shape, ours, theirs = config
    rng = np.random.default_rng(seed)
    _pair(rng, ours, theirs, shape)
    x = rng.standard_normal(shape)
    cot = rng.standard_normal(theirs(torch.tensor(x)).shape)
    want_y, want_grads = torch_outputs(theirs, x, cot)
    y, grads = layer_outputs(ours, x, cot, "cpu", "float64")
    np.testing.assert_allclose(y, want_y, rtol=1e-8, atol=1e-9)
    for key, got in grads.items():
        want = want_grads[key if key == "input" else key.rsplit(".", 1)[-1]]
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-8, err_msg=key)


@pytest.mark.parametrize("shape,pads,mode", [
    ((2, 3, 4, 5), ((0, 0), (0, 0), (3, 2), (1, 4)), "reflect"),
    ((2, 3, 4), ((0, 0), (2, 1), (3, 0)), "edge"),
    ((3, 4), ((1, 2), (4, 3)), "wrap"),
    ((5,), ((4, 4),), "edge"),
    ((1, 2, 1, 2), ((0, 0), (1, 1), (0, 0), (1, 1)), "reflect")])
def test_mode_pad_op(shape, pads, mode):
    x = np.random.default_rng(len(shape)).standard_normal(shape)
    check_op("mode_pad", [x], {"pads": pads, "mode": mode})
    (got,) = forward("mode_pad", [x], {"pads": pads, "mode": mode}, "cpu")
    np.testing.assert_array_equal(got, np.pad(x.astype(np.float32), pads, mode=mode))


def test_mode_pad_errors_name_the_shape():
    from graphcnn.ir import Graph
    g = Graph("pads")
    x = g.input("x", (1, 2, 3, 3))
    with pytest.raises(GraphBuildError, match=r"reflect padding \(0, 3\) on axis 3 must be "
                                              r"below the axis size 3.*\(1, 2, 3, 3\)"):
        g.add("mode_pad", [x], pads=((0, 0),) * 3 + ((0, 3),), mode="reflect")
    with pytest.raises(GraphBuildError, match="pad mode must be one of"):
        g.add("mode_pad", [x], pads=((0, 0),) * 4, mode="symmetric")
    with pytest.raises(GraphBuildError, match="up to 4 axes"):
        g.add("mode_pad", [g.input("y", (1, 1, 2, 2, 2))], pads=((0, 0),) * 5, mode="edge")
