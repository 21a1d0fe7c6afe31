"""Winograd F(2x2, 3x3) convolution (backends/cpu/kernels/winograd.py): against the
reference on randomized shapes, in float32 and float64, alone and inside fused groups and
compiled models; its weight transform, its cache of frozen weights and its blocking."""

import numba
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from op_check import check_op

import graphcnn as gc
from graphcnn import nn
from graphcnn.backends.cpu import blas
from graphcnn.ops.conv import conv2d_ref

pytestmark = pytest.mark.skipif(not blas.AVAILABLE,
                                reason="numpy's OpenBLAS was not found: no Winograd path")


def rand(rng, shape, dtype=np.float32):
    return rng.standard_normal(shape).astype(dtype)


@pytest.fixture
def force_winograd(monkeypatch):
    """Every conv the cost model sends to GEMMs and Winograd accepts goes to Winograd."""
    from graphcnn.backends.cpu.kernels import conv_gemm, winograd
    monkeypatch.setattr(conv_gemm, "use_gemm", lambda *args: True)
    monkeypatch.setattr(winograd, "worth_trying", lambda *args: True)
    calls = []
    original = winograd.conv2d_winograd
    monkeypatch.setattr(winograd, "conv2d_winograd",
                        lambda *args: (calls.append(args[0].shape), original(*args)))
    return calls


@st.composite
def winograd_case(draw):
    n, c, o = draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    pads = draw(st.tuples(*[st.integers(0, 2)] * 4))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    assume(h + pads[0] + pads[1] >= 3 and w + pads[2] + pads[3] >= 3)
    return (n, c, h, w), (o, c, 3, 3), pads, draw(st.booleans())


@given(case=winograd_case(), seed=st.integers(0, 2**16))
def test_winograd_conv2d_equals_the_reference(case, seed):
    """Odd and even output sizes (a last half tile), any padding, with and without bias,
    through the cpu kernel (the bias added after the GEMMs): equal to the reference."""
    x_shape, w_shape, pads, bias = case
    rng = np.random.default_rng(seed)
    arrays = [rand(rng, x_shape), rand(rng, w_shape)] + ([rand(rng, w_shape[:1])] if bias else [])
    with pytest.MonkeyPatch.context() as patch:
        from graphcnn.backends.cpu.kernels import conv_gemm, winograd
        patch.setattr(conv_gemm, "use_gemm", lambda *args: True)
        patch.setattr(winograd, "worth_trying", lambda *args: True)
        check_op("conv2d", arrays, dict(stride=1, padding=pads, dilation=1, groups=1),
                 grad=False)


@given(case=winograd_case(), seed=st.integers(0, 2**16), per_block=st.integers(1, 4),
       split_channels=st.booleans(), dtype=st.sampled_from([np.float32, np.float64]))
def test_winograd_kernel_in_blocks_of_any_size(case, seed, per_block, split_channels, dtype):
    """The kernel itself, with blocks of 1-4 tile rows that cross image boundaries, the
    threads splitting the tiles or the output channels: float64 to 1e-12 of the reference
    (the transforms are exact), float32 to 1e-5."""
    from graphcnn.backends.cpu.kernels import winograd
    x_shape, w_shape, pads, _ = case
    rng = np.random.default_rng(seed)
    x, w = rand(rng, x_shape, dtype), rand(rng, w_shape, dtype)
    attrs = dict(stride=(1, 1), padding=pads, dilation=(1, 1), groups=1)
    want = conv2d_ref(x.astype(np.float64), w.astype(np.float64), **attrs)
    out = np.full(want.shape, np.nan, dtype)
    parts = numba.get_num_threads() if split_channels else 1
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(winograd, "forward_plan", lambda *args: (per_block, parts))
        winograd.conv2d_winograd(x, w, out, attrs)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol * max(1.0, np.abs(want).max()))


@given(case=winograd_case(), o=st.integers(1, 80), seed=st.integers(0, 2**16),
       per_block=st.integers(1, 4), split_channels=st.booleans())
def test_winograd_with_packed_products_in_blocks_of_any_size(case, o, seed, per_block,
                                                             split_channels):
    """The float32 variant whose 16 products run on packed_gemm's microkernel (U packed in
    panels of 16 output channels, up to three a tile, V read in place, NR tiles a step):
    up to 80 output channels (partial panels, threads taking whole panels), blocks of 1-4 tile rows, equal
    to the reference; the tiles' last step reads past V without changing the result."""
    from graphcnn.backends.cpu.kernels import winograd
    x_shape, (_, c, kh, kw), pads, _ = case
    rng = np.random.default_rng(seed)
    x, w = rand(rng, x_shape), rand(rng, (o, c, kh, kw))
    attrs = dict(stride=(1, 1), padding=pads, dilation=(1, 1), groups=1)
    want = conv2d_ref(x.astype(np.float64), w.astype(np.float64), **attrs)
    out = np.full(want.shape, np.nan, np.float32)
    parts = numba.get_num_threads() if split_channels else 1
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(winograd, "forward_plan", lambda *args: (per_block, parts))
        winograd.conv2d_winograd_packed(x, w, out, attrs)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(want).max()))


@given(case=winograd_case(), seed=st.integers(0, 2**16), per_block=st.integers(1, 4),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_winograd_gradient_kernels(case, seed, per_block, dtype):
    """The input gradient (a Winograd conv of dy with the turned weight, padded 2 - p) and
    the weight gradient (dU = sum over tiles of (A dY A^T) * V, then G^T dU G), with blocks
    of 1-4 tile rows split over the threads' accumulators: equal to the reference."""
    from graphcnn.backends.cpu.kernels import winograd, winograd_weight_grad
    from graphcnn.ops.conv import conv2d_input_grad_ref, conv2d_weight_grad_ref
    x_shape, w_shape, pads, _ = case
    rng = np.random.default_rng(seed)
    x, w = rand(rng, x_shape, dtype), rand(rng, w_shape, dtype)
    attrs = dict(stride=(1, 1), padding=pads, dilation=(1, 1), groups=1)
    dy = rand(rng, conv2d_ref(x, w, **attrs).shape, dtype)
    want_dx = conv2d_input_grad_ref(dy.astype(np.float64), w.astype(np.float64),
                                    x_shape[2:], **attrs)
    want_dw = conv2d_weight_grad_ref(dy.astype(np.float64), x.astype(np.float64), (3, 3),
                                     **attrs)
    dx, dw = np.full(x.shape, np.nan, dtype), np.full(w.shape, np.nan, dtype)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(winograd, "block_rows", lambda *args: per_block)
        patch.setattr(winograd, "forward_plan", lambda *args: (per_block, 1))
        winograd_weight_grad.conv2d_weight_grad_winograd(dy, x, dw, attrs)
        if winograd.input_grad_applies(w_shape, attrs):
            winograd.conv2d_input_grad_winograd(dy, w, dx, attrs)
            np.testing.assert_allclose(dx, want_dx, rtol=tol,
                                       atol=tol * max(1.0, np.abs(want_dx).max()))
    np.testing.assert_allclose(dw, want_dw, rtol=tol, atol=tol * max(1.0, np.abs(want_dw).max()))


@given(case=winograd_case(), seed=st.integers(0, 2**16))
def test_winograd_gradient_ops_through_the_cpu_kernels(case, seed):
    """conv2d's gradients by Winograd through the kernels (and fused groups) of a
    value_and_grad graph: equal to the reference backend's."""
    x_shape, w_shape, pads, bias = case
    assume(max(pads) <= 2)
    rng = np.random.default_rng(seed)
    arrays = [rand(rng, x_shape), rand(rng, w_shape)] + ([rand(rng, w_shape[:1])] if bias else [])
    from op_check import check_gradients_backends
    with pytest.MonkeyPatch.context() as patch:
        from graphcnn.backends.cpu.kernels import conv_gemm, winograd
        patch.setattr(conv_gemm, "use_gemm", lambda *args: True)
        patch.setattr(winograd, "worth_trying", lambda *args: True)
        check_gradients_backends("conv2d", arrays, dict(stride=1, padding=pads, dilation=1,
                                                        groups=1))


def test_weight_transform_is_g_w_gt():
    from graphcnn.backends.cpu.kernels.winograd import WINOGRAD_G, weight_transform
    w = np.random.default_rng(0).standard_normal((5, 3, 3, 3))
    want = np.einsum("ai,ocij,bj->aboc", WINOGRAD_G, w, WINOGRAD_G).reshape(16, 5, 3)
    np.testing.assert_allclose(weight_transform(w), want, rtol=1e-14, atol=1e-14)
    turned = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    want = np.einsum("ai,ocij,bj->aboc", WINOGRAD_G, turned, WINOGRAD_G).reshape(16, 3, 5)
    np.testing.assert_allclose(weight_transform(w, flip=True), want, rtol=1e-14, atol=1e-14)


def test_packed_transform_is_u_in_panels_of_16_output_channels():
    from graphcnn.backends.cpu.kernels import winograd
    w = np.random.default_rng(0).standard_normal((4, 2, 3, 3)).astype(np.float32)
    u = winograd.weight_transform(w)
    panels = winograd.weight_transform(w, packed=True)
    assert panels.shape == (16, 1, 2, 16)
    np.testing.assert_array_equal(panels[:, 0, :, :4], u.transpose(0, 2, 1))
    assert not panels[:, 0, :, 4:].any()  # the panel's rows past the 4 channels are zero
    assert winograd.weight_transform(w, flip=True).shape == (16, 2, 4)


def test_blocks_fit_the_threads_and_narrow_layers_keep_im2col():
    from graphcnn.backends.cpu.kernels.winograd import (
        MIN_BLOCK_TILES,
        block_rows,
        forward_plan,
        tiles,
        worth_trying,
    )
    threads = numba.get_num_threads()
    for n, hw, c in [(1, (56, 56), 64), (16, (28, 28), 128), (1, (14, 14), 256),
                     (16, (7, 7), 512), (3, (5, 9), 8)]:
        per = block_rows(n, hw, c, 4, threads)
        rows = n * tiles(hw)[0]
        blocks = -(-rows // per)
        assert blocks >= min(threads, rows)  # every thread has a block
        assert per * tiles(hw)[1] >= MIN_BLOCK_TILES or blocks <= threads
    assert forward_plan(1, (56, 56), 64, 4, 2) == (7, 1)   # 196-tile blocks, tiles split
    assert forward_plan(1, (14, 14), 256, 4, 2) == (7, 2)  # all 49 tiles, channels split
    assert worth_trying(1, (56, 56), 64, 4, 2, True)      # ResNet-18's 64@56 at batch 1
    assert worth_trying(1, (56, 56), 64, 4, 2, False)     # ... in training too
    assert worth_trying(1, (14, 14), 256, 4, 2, True)     # 256@14, frozen: 28-tile blocks
    assert not worth_trying(1, (14, 14), 256, 4, 2, False)  # not with the transform
    assert not worth_trying(1, (7, 7), 512, 4, 2, True)   # 512@7 at batch 1: 16 tiles


def test_cost_model_sends_resnet_3x3_layers_to_winograd_only_where_it_applies():
    from graphcnn.backends.cpu.kernels.winograd import applies
    attrs = dict(stride=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1), groups=1)
    assert applies((1, 64, 56, 56), (64, 64, 3, 3), attrs)
    assert not applies((1, 64, 56, 56), (64, 64, 3, 3), dict(attrs, stride=(2, 2)))
    assert not applies((1, 64, 56, 56), (64, 64, 3, 3), dict(attrs, dilation=(2, 2)))
    assert not applies((1, 64, 56, 56), (64, 32, 3, 3), dict(attrs, groups=2))
    assert not applies((1, 64, 56, 56), (64, 64, 5, 5), attrs)


def test_compiled_model_runs_winograd_with_its_fused_epilogue(force_winograd):
    """conv + bias + residual add + relu as one fused kernel whose conv is Winograd, on
    frozen weights (transformed once): equal to the reference at opt level 0."""
    x = gc.Input((8, 10, 10), name="x")
    y = gc.relu(nn.Conv2d(8, 8, 3, padding=1)(x) + x)
    y = nn.Conv2d(8, 12, 3, padding=1, bias=False)(y)
    model = gc.Model(x, y)
    xs = rand(np.random.default_rng(0), (3, 8, 10, 10))
    fast = gc.compile(model, batch_size=3, opt_level=2)
    assert fast.report()["kernels"] == 2
    force_winograd.clear()
    got = fast(xs)
    assert force_winograd == [(3, 8, 10, 10), (3, 8, 10, 10)]
    want = gc.compile(model, batch_size=3, backend="reference", opt_level=0)(xs)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fast(xs), got, rtol=0, atol=0)  # the cached transform


def test_training_step_runs_all_three_conv_ops_by_winograd(monkeypatch):
    """A value_and_grad step whose 3x3 convs go to Winograd forward, input gradient and
    weight gradient: loss and gradients equal the reference backend's."""
    from graphcnn.backends.cpu.kernels import conv_gemm, winograd, winograd_weight_grad
    monkeypatch.setattr(conv_gemm, "use_gemm", lambda *args: True)
    monkeypatch.setattr(winograd, "worth_trying", lambda *args: True)
    calls = []
    for module, name in ((winograd, "conv2d_winograd"), (winograd, "conv2d_input_grad_winograd"),
                         (winograd_weight_grad, "conv2d_weight_grad_winograd")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *args, _name=name, _f=original: (
            calls.append(_name), _f(*args)))
    x = gc.Input((3, 8, 8), name="x")
    y = gc.relu(nn.Conv2d(3, 8, 3, padding=1)(x))
    y = gc.relu(nn.Conv2d(8, 8, 3, padding=1)(y))
    model = gc.Model(x, nn.Linear(8 * 8 * 8, 4)(gc.flatten(y)))
    rng = np.random.default_rng(0)
    xs, labels = rand(rng, (2, 3, 8, 8)), np.array([1, 3])
    step = gc.value_and_grad(model, batch_size=2)
    loss, grads = step(xs, labels)
    assert {"conv2d_winograd", "conv2d_input_grad_winograd",
            "conv2d_weight_grad_winograd"} <= set(calls)
    graph = step.executable.graph
    ops = {n.id: n.attrs.get("anchor") or n.op for n in graph.nodes}
    winograd_ops = {ops[node_id] for node_id, _, name, _ in
                    step.executable.runner.implementations() if name == "winograd"}
    assert winograd_ops == {"conv2d", "conv2d_input_grad", "conv2d_weight_grad"}
    want_loss, want = gc.value_and_grad(model, batch_size=2, backend="reference",
                                        opt_level=0)(xs, labels)
    assert abs(loss - want_loss) <= 1e-5 * max(1.0, abs(want_loss))
    for name, value in want.items():
        np.testing.assert_allclose(grads[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
