"""Winograd F(4x4, 3x3) (backends/cpu/kernels/winograd4.py): its transforms, its kernel
against the reference on randomized shapes and blockings, its packed weight transform, and
whole models forced onto it, forward and input gradient."""

import numba
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import graphcnn as gc
from graphcnn import nn
from graphcnn.backends.cpu import blas
from graphcnn.backends.cpu.kernels import packed_gemm, winograd4
from graphcnn.backends.cpu.strategy import forced
from graphcnn.ops.conv import conv2d_input_grad_ref, conv2d_ref

pytestmark = pytest.mark.skipif(not blas.AVAILABLE,
                                reason="numpy's OpenBLAS was not found: no Winograd path")


def rand(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


def test_the_transforms_compute_a_4x4_block_of_a_3x3_correlation():
    """A^T [(G g G^T) * (B^T d B)] A is the 4x4 correlation of a 6x6 patch d with a 3x3
    filter g, to float64 rounding: the matrices the docstring states."""
    rng = np.random.default_rng(0)
    d, g = rng.standard_normal((6, 6)), rng.standard_normal((3, 3))
    got = winograd4.A_T @ ((winograd4.G @ g @ winograd4.G.T)
                           * (winograd4.B_T @ d @ winograd4.B_T.T)) @ winograd4.A_T.T
    want = [[np.sum(d[i:i + 3, j:j + 3] * g) for j in range(4)] for i in range(4)]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)


@st.composite
def f4_case(draw):
    n, c, o = draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 80))
    pads = draw(st.tuples(*[st.integers(0, 2)] * 4))
    h, w = draw(st.integers(1, 14)), draw(st.integers(1, 14))
    assume(h + pads[0] + pads[1] >= 3 and w + pads[2] + pads[3] >= 3)
    return (n, c, h, w), (o, c, 3, 3), pads


@given(case=f4_case(), seed=st.integers(0, 2**16), per_block=st.integers(1, 4),
       split_channels=st.booleans())
def test_the_kernel_in_blocks_of_any_size_equals_the_reference(case, seed, per_block,
                                                              split_channels):
    """Maps of any size (last tiles partly outside the output), any padding, up to 80
    output channels (partial panels of 16), blocks of 1-4 tile rows that cross image
    boundaries, the threads splitting the tiles or the output channels: within a few 1e-6
    of the output's largest value."""
    x_shape, w_shape, pads = case
    rng = np.random.default_rng(seed)
    x, w = rand(rng, x_shape), rand(rng, w_shape)
    attrs = dict(stride=(1, 1), padding=pads, dilation=(1, 1), groups=1)
    want = conv2d_ref(x.astype(np.float64), w.astype(np.float64), **attrs)
    out = np.full(want.shape, np.nan, np.float32)
    parts = numba.get_num_threads() if split_channels else 1
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(winograd4, "forward_plan", lambda *args: (per_block, parts))
        winograd4.conv2d_winograd4(x, w, out, attrs)
    np.testing.assert_allclose(out, want, rtol=0, atol=2e-5 * max(1.0, np.abs(want).max()))


@given(case=f4_case(), seed=st.integers(0, 2**16))
def test_the_input_gradient_as_the_turned_conv_equals_the_reference(case, seed):
    """dx = the F(4x4) conv of dy with the weight turned and transposed, padded 2 - p
    (turned.py), for any padding up to 2 and a live weight (transformed at the call)."""
    from graphcnn.backends.cpu.kernels import turned
    (n, c, h, w_len), (o, _, kh, kw), pads = case
    oh, ow = h + pads[0] + pads[1] - 2, w_len + pads[2] + pads[3] - 2
    rng = np.random.default_rng(seed)
    dy, w = rand(rng, (n, o, oh, ow)), rand(rng, (o, c, kh, kw))
    attrs = dict(stride=(1, 1), padding=pads, dilation=(1, 1), groups=1)
    want = conv2d_input_grad_ref(dy.astype(np.float64), w.astype(np.float64), (h, w_len),
                                 **attrs)
    dx = np.full(want.shape, np.nan, np.float32)
    turned.input_grad("winograd-f4", dy, w, dx, attrs)
    np.testing.assert_allclose(dx, want, rtol=0, atol=2e-5 * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("flip", [False, True])
def test_the_weight_transform_is_g_w_gt_in_panels_of_16(flip):
    rng = np.random.default_rng(1)
    w = rand(rng, (20, 7, 3, 3))
    panels = winograd4.weight_transform(w, flip=flip)
    taps = w.astype(np.float64)
    if flip:   # the input gradient's weight: (C, O), each filter turned
        taps = taps.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
    u = np.einsum("ai,ocij,bj->aboc", winograd4.G, taps, winograd4.G).reshape(
        36, *taps.shape[:2])
    want = np.zeros((36, 2, taps.shape[1], packed_gemm.LANES), np.float32)
    for e in range(36):
        for o in range(taps.shape[0]):
            want[e, o // 16, :, o % 16] = u[e, o]
    if flip:
        want = want[:, :1]
    np.testing.assert_allclose(panels, want, rtol=1e-6, atol=1e-7)


def test_a_model_forced_onto_it_trains_and_infers_as_the_reference():
    """A 3x3 conv + relu model with frozen weights (forward), and its training step, whose
    input gradient runs as the F(4x4) conv of dy with the weight turned: the reference's
    figures."""
    x = gc.Input((8, 10, 10), name="x")
    h = gc.relu(nn.Conv2d(8, 24, 3, padding=1)(x))
    model = gc.Model(x, nn.Conv2d(24, 16, 3, padding=1)(h))
    xs = rand(np.random.default_rng(2), (2, 8, 10, 10))
    ops = {"conv2d": "winograd-f4", "conv2d_input_grad": "winograd-f4"}
    with forced(ops):
        exe = gc.compile(model, batch_size=2)
        step = gc.value_and_grad(model, loss="mse", batch_size=2)
    assert {s.implementation for s in exe.runner.steps} >= {"winograd-f4"}
    want = gc.compile(model, batch_size=2, backend="reference", opt_level=0)(xs)
    np.testing.assert_allclose(exe(xs), want, rtol=1e-4, atol=1e-4)
    assert "winograd-f4" in {s.implementation for s in step.executable.runner.steps}
    assert_step_is_the_reference(step, model, xs, rand(np.random.default_rng(3), want.shape))


def assert_step_is_the_reference(step, model, xs, target):
    """The mse training step's loss and gradients are the reference backend's."""
    value, grads = step(xs, target)
    ref_value, ref_grads = gc.value_and_grad(model, loss="mse", batch_size=len(xs),
                                             backend="reference")(xs, target)
    np.testing.assert_allclose(value, ref_value, rtol=1e-4)
    for name in ref_grads:
        np.testing.assert_allclose(grads[name], ref_grads[name], rtol=1e-3,
                                   atol=1e-4 * np.abs(ref_grads[name]).max())


def test_it_is_offered_for_frozen_weights_and_small_live_ones():
    """Transformed once at build (inference) it is a candidate; a live weight (training) is
    transformed at every call, into a U 2.25x F(2x2)'s: offered up to 128x128 channels."""
    from graphcnn.backends.cpu.candidates import STRATEGIES, Site
    from graphcnn.backends.cpu.candidates_grad import GRAD_STRATEGIES
    f32 = np.dtype(np.float32)
    attrs = dict(stride=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1), groups=1,
                 input_hw=(14, 14))
    for op, strategies in (("conv2d", STRATEGIES), ("conv2d_input_grad", GRAD_STRATEGIES)):
        f4 = next(c for c in strategies[op].candidates if c.name == "winograd-f4")
        for channels, frozen, offered in ((256, True, True), (256, False, False),
                                          (128, False, True), (64, False, True)):
            w = np.zeros((channels, channels, 3, 3), np.float32)
            w.setflags(write=not frozen)
            site = Site(op, attrs, ((2, channels, 14, 14), w.shape), (f32, f32),
                        (2, channels, 14, 14), f32, (None, w))
            assert f4.applies(site) and f4.offered(site) == offered, (op, channels, frozen)


def test_an_artifact_keeps_it_and_its_figures(tmp_path):
    """An executable whose conv the autotuner gave F(4x4) saves as an artifact that loads
    with the same implementation and gives the same bits."""
    x = gc.Input((16, 12, 12), name="x")
    model = gc.Model(x, gc.relu(nn.Conv2d(16, 32, 3, padding=1)(x)))
    xs = rand(np.random.default_rng(4), (2, 16, 12, 12))
    with forced({"conv2d": "winograd-f4"}):
        exe = gc.compile(model, batch_size=2)
    gc.save(exe, tmp_path / "f4.gcnn")
    loaded = gc.load(tmp_path / "f4.gcnn")
    assert [s.implementation for s in loaded.runner.steps] == ["winograd-f4"]
    np.testing.assert_array_equal(loaded(xs), exe(xs))


def test_its_blocks_hold_about_half_the_v_of_f2x2s():
    """F(4x4) plans blocks of about winograd4.BLOCK_BYTES of V (half F(2x2)'s), at least
    the minimum tiles, every thread with a block: ResNet's 128@28 at batch 16 in blocks of
    35 tiles, not 56."""
    from graphcnn.backends.cpu.kernels import winograd
    assert winograd4.BLOCK_BYTES == winograd.BLOCK_BYTES // 2
    assert winograd4.forward_plan(16, (28, 28), 128, 2) == (5, 1)
    fewest = winograd.MIN_BLOCK_TILES // 4   # 4x4 tiles with as many pixels
    for n, hw, c in [(16, (56, 56), 64), (16, (28, 28), 128), (16, (14, 14), 256),
                     (1, (56, 56), 64)]:
        per, _ = winograd4.forward_plan(n, hw, c, 2)
        tw = winograd.tiles(hw, 4)[1]
        row_bytes = winograd4.POSITIONS * c * tw * 4   # V of one row of tiles
        # about BLOCK_BYTES (rounded up to whole tile rows), or the fewest tiles a block takes
        assert per * row_bytes < winograd4.BLOCK_BYTES + row_bytes or (per - 1) * tw < fewest
