"""The input gradient of a stride-1 conv as the forward conv of dy with the weight turned
(backends/cpu/kernels/turned.py), on each forward kernel it offers: equal to the reference,
live and frozen weights, NaN and Inf where the reference has them."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from op_check import check_forward

import graphcnn as gc
from graphcnn import nn
from graphcnn.ops.conv import conv2d_input_grad_ref
from graphcnn.ops.conv_shapes import is_pointwise


def rand(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


ALGORITHMS = ["packed", "packed-channels", "implicit", "winograd-packed", "winograd-f4"]
# Offered for live weights too (winograd-f4 for small ones only: candidates.f4_weights; the
# cases here are all small).
LIVE = ALGORITHMS


def _pick(monkeypatch, algorithm, chosen=None):
    from graphcnn.backends.cpu import autotune
    from graphcnn.backends.cpu.kernels import conv_gemm
    monkeypatch.setattr(conv_gemm, "use_gemm", lambda *args: True)
    if algorithm == "winograd-f4":   # declared above the default factor (accuracy.py)
        monkeypatch.setenv("GRAPHCNN_ACCURACY_FACTOR", "30")

    def pick(kind, key, candidates, default):
        if chosen is not None and algorithm in candidates:
            chosen.append(key)
        return algorithm if algorithm in candidates else default
    monkeypatch.setattr(autotune, "pick", pick)


@st.composite
def stride1_case(draw):
    """(dy shape, w shape, attrs) of a stride-1 one-group conv padded by less than its
    kernel on each side (3x3 ones for Winograd, others with any kernel up to 5x5)."""
    n, c, o = draw(st.integers(1, 2)), draw(st.integers(1, 20)), draw(st.integers(1, 20))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    pads = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kh - 1)),
            draw(st.integers(0, kw - 1)), draw(st.integers(0, kw - 1)))
    h, w = draw(st.integers(1, 14)), draw(st.integers(1, 14))
    oh, ow = h + pads[0] + pads[1] - kh + 1, w + pads[2] + pads[3] - kw + 1
    assume(oh >= 1 and ow >= 1)
    attrs = dict(stride=(1, 1), padding=pads, dilation=(1, 1), groups=1, input_hw=(h, w))
    return (n, o, oh, ow), (o, c, kh, kw), attrs


@settings(max_examples=25, deadline=None)
@given(case=stride1_case(), seed=st.integers(0, 2**16), algorithm=st.sampled_from(LIVE))
def test_input_grad_on_the_forward_kernels_equals_the_reference(case, seed, algorithm):
    dy_shape, w_shape, attrs = case
    if algorithm.startswith("winograd"):   # Winograd's 3x3 only: pad the case to a 3x3 kernel
        w_shape = w_shape[:2] + (3, 3)
        attrs = dict(attrs, padding=tuple(min(p, 2) for p in attrs["padding"]))
        h, w = attrs["input_hw"]
        p = attrs["padding"]
        dy_shape = dy_shape[:2] + (h + p[0] + p[1] - 2, w + p[2] + p[3] - 2)
        assume(min(dy_shape[2:]) >= 1)
    # A 1x1 unpadded conv's dy is the GEMM's columns already: no implicit GEMM offered.
    assume(algorithm != "implicit" or not is_pointwise(w_shape, attrs))
    rng = np.random.default_rng(seed)
    with pytest.MonkeyPatch.context() as patch:
        chosen = []
        _pick(patch, algorithm, chosen)
        # F(4x4) rounds more (declared 30x the GEMM's error, accuracy.py): outputs here
        # reach about 40, and its error a few 1e-6 of that
        atol = 1e-4 if algorithm == "winograd-f4" else 1e-5
        check_forward("conv2d_input_grad", [rand(rng, dy_shape), rand(rng, w_shape)], attrs,
                      1e-4, atol)
        assert chosen, f"{algorithm} was not offered"


def test_strided_and_grouped_convs_keep_the_gemm():
    from graphcnn.backends.cpu.kernels import turned
    same = dict(stride=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1), groups=1)
    assert turned.applies((8, 8, 3, 3), same)
    assert turned.applies((8, 8, 1, 1), dict(same, padding=(0, 0, 0, 0)))
    assert not turned.applies((8, 8, 3, 3), dict(same, stride=(2, 2)))
    assert not turned.applies((8, 4, 3, 3), dict(same, groups=2))
    assert not turned.applies((8, 8, 3, 3), dict(same, dilation=(2, 2)))
    assert not turned.applies((8, 8, 3, 3), dict(same, padding=(3, 0, 0, 0)))
    assert turned.turned_attrs((8, 8, 5, 3), dict(same, padding=(2, 1, 0, 2)))["padding"] == \
        (2, 3, 2, 0)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_frozen_transposed_conv_turns_its_weight_once(monkeypatch, algorithm):
    """nn.ConvTranspose2d at stride 1 is conv2d_input_grad with a frozen weight: turned and
    packed when the executable is built, the same figures as the reference."""
    from graphcnn.backends.cpu.kernels import turned
    _pick(monkeypatch, algorithm)
    prepared = []
    original = turned.PREPARE[algorithm]
    monkeypatch.setitem(turned.PREPARE, algorithm,
                        lambda w: prepared.append(w.shape) or original(w))
    x = gc.Input((24, 9, 9), name="x")
    model = gc.Model(x, gc.relu(nn.ConvTranspose2d(24, 20, 3, padding=1)(x)))
    xs = rand(np.random.default_rng(1), (2, 24, 9, 9))
    exe = gc.compile(model, batch_size=2)
    built = len(prepared)
    got = [exe(xs) for _ in range(2)][-1]
    assert built >= 1 and len(prepared) == built   # at build, never per call
    want = gc.compile(model, batch_size=2, backend="reference", opt_level=0)(xs)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("special", [np.inf, -np.inf, np.nan])
def test_nonfinite_weights_give_the_references_nan_and_inf(monkeypatch, algorithm, special):
    """The forward kernels multiply dy's zero padding by the weights (0 * Inf = NaN), where
    the reference's scatter never does: such a dx is computed again exactly."""
    from graphcnn.backends.cpu.candidates import array_site
    from graphcnn.backends.cpu.candidates_grad import GRAD_STRATEGIES
    rng = np.random.default_rng(2)
    dy, w = rand(rng, (1, 16, 6, 6)), rand(rng, (16, 8, 3, 3))
    w[3, 2, 0, 0] = special
    attrs = dict(stride=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1), groups=1,
                 input_hw=(6, 6))
    dx = np.empty((1, 8, 6, 6), np.float32)
    candidate = next(c for c in GRAD_STRATEGIES["conv2d_input_grad"].candidates
                     if c.name == algorithm)
    site = array_site("conv2d_input_grad", [dy, w], dx, attrs)
    assert candidate.applies(site)
    candidate.build(site).run([dy, w], dx)
    want = conv2d_input_grad_ref(dy, w, (6, 6), **{k: v for k, v in attrs.items()
                                                  if k != "input_hw"})
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(dx), np.isposinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(dx[finite], want[finite], rtol=1e-4, atol=1e-5)
