"""The training step on the cpu backend: the kernels chosen for the backward pass and the
gradients they give, against the reference backend (opt level 0) and a float64 oracle."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from graphcnn.backends.cpu.kernels import conv, depthwise_grad
from graphcnn.backends.cpu.registry import launch
from graphcnn.backends.cpu.strategy import Site, choose

UNPADDED = dict(stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1)


def weight_grad_oracle(dy, x, groups, k=None, stride=(1, 1), pads=(0, 0, 0, 0)):
    """dw[o, ci, i, j] = sum over n, oy, ox of dy[n, o, oy, ox] xpad[n, c, oy*sh + i,
    ox*sw + j], in float64, c the input channel ci of o's group, xpad x zero-padded."""
    o_len, (oh, ow) = dy.shape[1], dy.shape[2:]
    kh, kw = k or (x.shape[2] - oh + 1, x.shape[3] - ow + 1)
    cg, og = x.shape[1] // groups, o_len // groups
    xpad = np.pad(x.astype(np.float64), ((0, 0), (0, 0), pads[:2], pads[2:]))
    windows = sliding_window_view(xpad, (kh, kw), axis=(2, 3))
    windows = windows[:, :, ::stride[0], ::stride[1]][:, :, :oh, :ow]
    out = np.zeros((o_len, cg, kh, kw))
    for g in range(groups):
        out[g * og:(g + 1) * og] = np.einsum(
            "nohw,nchwij->ocij", dy[:, g * og:(g + 1) * og].astype(np.float64),
            windows[:, g * cg:(g + 1) * cg])
    return out


@pytest.mark.parametrize("n, c, o, hw, k, groups", [
    (3, 1, 6, (12, 11), (5, 5), 1),     # LeNet-5's c1, smaller
    (2, 4, 6, (7, 9), (3, 2), 2),       # groups, a non-square kernel
    (1, 2, 3, (4, 4), (4, 4), 1),       # a full window: one output pixel
])
def test_the_wide_weight_gradient_matches_a_float64_oracle(n, c, o, hw, k, groups):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, *hw)).astype(np.float32)
    dy = rng.standard_normal((n, o, hw[0] - k[0] + 1, hw[1] - k[1] + 1)).astype(np.float32)
    dw = np.empty((o, c // groups, *k), np.float32)
    conv.conv2d_weight_grad_wide(dy, x, dw, dict(UNPADDED, groups=groups))
    want = weight_grad_oracle(dy, x, groups)
    np.testing.assert_allclose(dw, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_the_wide_weight_gradient_keeps_nan_and_inf_where_the_direct_kernel_does():
    """Its zero columns meet real inputs: an infinity there would make 0 * inf = NaN in
    taps that never read it, so an input that is not finite takes the direct kernel."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    dy = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    x[1, 0, 7, 7] = np.inf       # read by tap (4, 4) only, with dy[1, :, 3, 3]
    dy[0, 1, 0, 0] = np.nan      # every tap of filter 1
    wide, direct = np.empty((2, 1, 5, 5), np.float32), np.empty((2, 1, 5, 5), np.float32)
    conv.conv2d_weight_grad_wide(dy, x, wide, UNPADDED)
    launch(conv._conv2d_weight_grad, dy, x, direct, *conv.geometry(UNPADDED))
    np.testing.assert_array_equal(wide, direct)
    assert np.isnan(wide[1]).all() and np.isfinite(wide[0, 0, :4]).all()


@pytest.mark.parametrize("hw, stride", [((9, 7), 1), ((9, 7), 2), ((8, 8), 2), ((3, 3), 1),
                                        ((1, 2), 1), ((14, 14), 1), ((3, 60), 1),
                                        ((7, 100), 2)])
def test_the_depthwise_3x3_weight_gradient_matches_a_float64_oracle(hw, stride):
    rng = np.random.default_rng(4)
    n, c = 3, 5
    x = rng.standard_normal((n, c, *hw)).astype(np.float32)
    oh, ow = (hw[0] - 1) // stride + 1, (hw[1] - 1) // stride + 1
    dy = rng.standard_normal((n, c, oh, ow)).astype(np.float32)
    attrs = dict(UNPADDED, stride=(stride, stride), padding=(1, 1, 1, 1), groups=c)
    dw = np.empty((c, 1, 3, 3), np.float32)
    depthwise_grad.depthwise3x3_weight_grad(dy, x, dw, attrs)
    want = weight_grad_oracle(dy, x, c, (3, 3), (stride, stride), (1, 1, 1, 1))
    np.testing.assert_allclose(dw, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_the_depthwise_3x3_weight_gradient_keeps_nan_and_inf_as_the_direct_kernel():
    """A NaN dy reaches every tap, padding included (dy * 0 is NaN, as in the reference);
    an infinite x takes the direct kernel (the zeros past each row would multiply it)."""
    rng = np.random.default_rng(5)
    attrs = dict(UNPADDED, stride=(2, 2), padding=(1, 1, 1, 1), groups=3)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    dy = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    dy[1, 2, 0, 0] = np.nan
    for x_case in (x, np.where(np.arange(6) == 5, np.inf, x).astype(np.float32)):
        mine, direct = np.empty((3, 1, 3, 3), np.float32), np.empty((3, 1, 3, 3), np.float32)
        depthwise_grad.depthwise3x3_weight_grad(dy, x_case, mine, attrs)
        launch(conv._conv2d_weight_grad, dy, x_case, direct, *conv.geometry(attrs))
        np.testing.assert_array_equal(np.isnan(mine), np.isnan(direct))
        np.testing.assert_allclose(mine, direct, rtol=1e-5, atol=1e-5)
        assert np.isnan(mine[2]).all()


@pytest.mark.parametrize("hw, stride", [((5, 5), 1), ((3, 60), 1), ((5, 100), 2)])
def test_the_depthwise_weight_gradient_keeps_nan_and_inf_on_flat_and_long_planes(hw, stride):
    """The flat planes (a tap past an edge column masked to the padding's zero) and the
    long ones (the scratch cleared for the first image only): a NaN dy reaches every tap,
    an infinity in x gives the direct kernel's values, and does not leak from one image's
    plane into the next one's sums."""
    rng = np.random.default_rng(7)
    oh, ow = (hw[0] - 1) // stride + 1, (hw[1] - 1) // stride + 1
    attrs = dict(UNPADDED, stride=(stride, stride), padding=(1, 1, 1, 1), groups=3)
    x = rng.standard_normal((2, 3, *hw)).astype(np.float32)
    dy = rng.standard_normal((2, 3, oh, ow)).astype(np.float32)
    dy[1, 2, 0, 0] = np.nan
    inf_x = x.copy()
    inf_x[0, 1, -1, -1] = np.inf
    for x_case in (x, inf_x):
        mine, direct = np.empty((3, 1, 3, 3), np.float32), np.empty((3, 1, 3, 3), np.float32)
        depthwise_grad.depthwise3x3_weight_grad(dy, x_case, mine, attrs)
        launch(conv._conv2d_weight_grad, dy, x_case, direct, *conv.geometry(attrs))
        np.testing.assert_array_equal(np.isnan(mine), np.isnan(direct))
        np.testing.assert_allclose(mine, direct, rtol=1e-5, atol=1e-5)
        assert np.isnan(mine[2]).all() and np.isfinite(mine[0]).all()


def test_an_infinity_that_no_window_reads_leaves_the_weight_gradient_finite():
    """Unpadded at stride 2, x's last column of six is read by no window: an Inf there
    meets only the kernel's zero columns, and the result is the reference's, finite, as
    the direct kernel's."""
    rng = np.random.default_rng(6)
    attrs = dict(UNPADDED, stride=(2, 2), padding=(0, 0, 0, 0), groups=3)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    x[:, :, :, 5] = np.inf
    dy = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    mine, direct = np.empty((3, 1, 3, 3), np.float32), np.empty((3, 1, 3, 3), np.float32)
    depthwise_grad.depthwise3x3_weight_grad(dy, x, mine, attrs)
    launch(conv._conv2d_weight_grad, dy, x, direct, *conv.geometry(attrs))
    assert np.isfinite(direct).all()
    np.testing.assert_allclose(mine, direct, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride, dy_hw, x_hw", [(1, (9, 7), (9, 7)), (2, (5, 4), (9, 8))])
def test_the_depthwise_input_gradient_applies_relu6s_mask_as_it_stores(stride, dy_hw, x_hw):
    """conv2d_input_grad + clip_grad (MobileNet's backward through a depthwise 3x3 and
    ReLU6): the depthwise kernel masks each plane as it writes it, no second pass, and the
    result is the reference's, NaN in dy kept only where the mask passes it."""
    from graphcnn.ir.graph import Graph
    from graphcnn.passes.fusion import fuse_operators
    from graphcnn.runtime.executable import make_runner

    rng = np.random.default_rng(8)
    g = Graph("depthwise_grad_mask")
    dy, y = g.input("dy", (2, 6, *dy_hw)), g.input("y", (2, 6, *x_hw))
    w = g.constant(rng.standard_normal((6, 1, 3, 3)).astype(np.float32))
    grad = g.add("conv2d_input_grad", [dy, w], stride=stride, padding=1, groups=6,
                 input_hw=x_hw)
    g.set_outputs([g.add("clip_grad", [grad, y], low=0.0, high=6.0)])
    feeds = {dy.id: rng.standard_normal((2, 6, *dy_hw)).astype(np.float32),
             y.id: rng.uniform(-1.0, 7.0, (2, 6, *x_hw)).astype(np.float32)}
    feeds[dy.id][1, 2, 1, 1] = np.nan
    runner = make_runner(fuse_operators(g), "cpu")
    got = runner.run(feeds)[0]
    [(_, op, name, why)] = runner.implementations()
    assert op == "fused" and name.startswith("depthwise-3x3")
    assert "clip_grad mask applied as it stores" in why
    want = make_runner(g, "reference").run(feeds)[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.isnan(want).any() and (want == 0).any()


@pytest.mark.parametrize("batch", [1, 4])
def test_the_1x1_input_gradient_applies_relu6s_mask_image_by_image(batch):
    """conv2d_input_grad + clip_grad of a 1x1 conv on the GEMM (a MobileNet projection's
    backward): the mask is applied to each image right after its product (at batch 1,
    fewer images than threads, as a pass after it), equal to the reference."""
    from graphcnn.ir.graph import Graph
    from graphcnn.passes.fusion import fuse_operators
    from graphcnn.runtime.executable import make_runner

    rng = np.random.default_rng(9)
    g = Graph("pointwise_grad_mask")
    dy, y = g.input("dy", (batch, 48, 24, 24)), g.input("y", (batch, 40, 24, 24))
    w = g.constant(rng.standard_normal((48, 40, 1, 1)).astype(np.float32))
    grad = g.add("conv2d_input_grad", [dy, w], input_hw=(24, 24))
    g.set_outputs([g.add("clip_grad", [grad, y], low=0.0, high=6.0)])
    feeds = {dy.id: rng.standard_normal((batch, 48, 24, 24)).astype(np.float32),
             y.id: rng.uniform(-1.0, 7.0, (batch, 40, 24, 24)).astype(np.float32)}
    feeds[dy.id][0, 3, 5, 7] = np.nan   # a NaN reaches dx's pixel (5, 7) where y passes it
    runner = make_runner(fuse_operators(g), "cpu")
    got = runner.run(feeds)[0]
    [(_, op, name, why)] = runner.implementations()
    assert (op, name) == ("fused", "gemm") and "clip_grad mask applied as it stores" in why
    want = make_runner(g, "reference").run(feeds)[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(want).any()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert (want == 0).any() and (want != 0).any()


@pytest.mark.parametrize("hw", [(9, 7), (3, 3), (1, 2), (14, 14)])
def test_the_depthwise_3x3_input_gradient_matches_the_reference(hw):
    """Stride 1, one pixel of padding: the forward kernel over dy, filters turned."""
    from op_check import forward

    rng = np.random.default_rng(7)
    dy = rng.standard_normal((2, 4, *hw)).astype(np.float32)
    w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    attrs = dict(UNPADDED, padding=(1, 1, 1, 1), groups=4)
    dx = np.empty_like(dy)
    depthwise_grad.depthwise3x3_input_grad(dy, w, dx, attrs)
    (want,) = forward("conv2d_input_grad", [dy, w], dict(attrs, input_hw=hw), "reference",
                      "float64")
    np.testing.assert_allclose(dx, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_the_depthwise_3x3_input_gradient_keeps_nan_and_inf_as_the_direct_kernel():
    """A NaN dy spreads to the taps it reaches only; an infinite weight takes the direct
    kernel (the turned filter would meet dy's zero padding: 0 * inf)."""
    rng = np.random.default_rng(8)
    attrs = dict(UNPADDED, padding=(1, 1, 1, 1), groups=3)
    dy = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    dy[1, 2, 0, 0] = np.nan
    w = rng.standard_normal((3, 1, 3, 3)).astype(np.float32)
    w_inf = w.copy()
    w_inf[0, 0, 2, 2] = np.inf
    for weight in (w, w_inf):
        mine, direct = np.empty_like(dy), np.empty_like(dy)
        depthwise_grad.depthwise3x3_input_grad(dy, weight, mine, attrs)
        launch(conv._conv2d_input_grad, dy, weight, direct, *conv.geometry(attrs))
        np.testing.assert_array_equal(np.isnan(mine), np.isnan(direct))
        np.testing.assert_allclose(mine, direct, rtol=1e-5, atol=1e-5)
    assert np.isnan(mine[1, 2, :2, :2]).all() and not np.isnan(mine[1, 2, 3:]).any()


@given(n=st.integers(1, 2), c=st.integers(2, 4), h=st.integers(1, 10), w=st.integers(1, 10),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**16))
def test_the_depthwise_3x3_stride_2_input_gradient_matches_the_reference(n, c, h, w, dtype,
                                                                         seed):
    """Stride 2, one pixel of padding (odd and even sizes: the last row and column of each
    parity), by pixel parity against the reference in float64."""
    from op_check import forward

    rng = np.random.default_rng(seed)
    dy = rng.standard_normal((n, c, (h - 1) // 2 + 1, (w - 1) // 2 + 1)).astype(dtype)
    wt = rng.standard_normal((c, 1, 3, 3)).astype(dtype)
    attrs = dict(UNPADDED, stride=(2, 2), padding=(1, 1, 1, 1), groups=c)
    assert depthwise_grad.input_grad_s2_applies(c, wt.shape, attrs)
    dx = np.full((n, c, h, w), np.nan, dtype)
    depthwise_grad.depthwise3x3_s2_input_grad(dy, wt, dx, attrs)
    (want,) = forward("conv2d_input_grad", [dy, wt], dict(attrs, input_hw=(h, w)),
                      "reference", "float64")
    np.testing.assert_allclose(dx, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_the_depthwise_3x3_stride_2_input_gradient_keeps_nan_and_inf_as_the_reference():
    """A NaN or infinite dy reaches the pixels its taps land on only; an infinite weight
    takes the direct kernel (the scratch's zero row and column would meet it)."""
    from op_check import forward

    rng = np.random.default_rng(9)
    attrs = dict(UNPADDED, stride=(2, 2), padding=(1, 1, 1, 1), groups=3)
    dy = rng.standard_normal((2, 3, 4, 3)).astype(np.float32)
    dy[1, 2, 0, 0], dy[0, 1, 3, 2] = np.nan, np.inf
    w = rng.standard_normal((3, 1, 3, 3)).astype(np.float32)
    w_inf = w.copy()
    w_inf[0, 0, 2, 2] = np.inf
    for weight in (w, w_inf):
        mine = np.empty((2, 3, 8, 6), np.float32)
        depthwise_grad.depthwise3x3_s2_input_grad(dy, weight, mine, attrs)
        with np.errstate(invalid="ignore"):
            (want,) = forward("conv2d_input_grad", [dy, weight],
                              dict(attrs, input_hw=(8, 6)), "reference")
        np.testing.assert_array_equal(np.isnan(mine), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(mine), np.isinf(want))
        finite = np.isfinite(want)
        np.testing.assert_allclose(mine[finite], want[finite], rtol=1e-5, atol=1e-5)
    assert np.isnan(mine[1, 2, :2, :2]).all() and not np.isnan(mine[1, 2, 2:]).any()


@pytest.mark.parametrize("n, c, o, hw, groups", [
    (5, 24, 16, 7, 1),     # images split unevenly over the threads
    (1, 8, 12, 3, 1),      # one image: no partial sums
    (4, 6, 4, 5, 2),       # groups
])
def test_the_1x1_weight_gradient_sums_the_images_per_thread(n, c, o, hw, groups):
    """A 1x1 stride-1 conv's weight gradient on the gemm candidate: sum_n dy[n] @ x[n].T,
    each thread summing its share of the images (blas.matmul_sum), against a float64
    oracle; it takes exactly the scratch it declares (the partial sums)."""
    from graphcnn.backends.cpu import candidates
    from graphcnn.backends.cpu.kernels import conv_gemm

    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
    dy = rng.standard_normal((n, o, hw, hw)).astype(np.float32)
    attrs = dict(UNPADDED, groups=groups, kernel_hw=(1, 1))
    f32 = np.dtype(np.float32)
    site = Site("conv2d_weight_grad", attrs, (dy.shape, x.shape), (f32, f32),
                (o, c // groups, 1, 1), f32, (None, None))
    gemm = next(cand for cand in candidates._GRAD_GEMMS if cand.name == "gemm")
    conv_gemm.release_workspaces()
    dw = np.full((o, c // groups, 1, 1), np.nan, np.float32)
    gemm.build(site).run([dy, x], dw)
    np.testing.assert_allclose(dw, weight_grad_oracle(dy, x, groups), rtol=1e-5, atol=1e-4)
    needs = gemm.scratch(site)
    assert conv_gemm.held_workspace_bytes() == conv_gemm.layout_bytes(needs)


@pytest.mark.parametrize("n, c, o, hw, k, stride, pad, groups", [
    (3, 3, 8, 42, (7, 7), 2, 3, 1),     # a stem, 7x7 stride 2: 21x21 = 441 pixels, below
    (3, 3, 8, 60, (7, 7), 2, 3, 1),     # ... and 27x27 = 729 pixels: split by images
    (5, 4, 6, 24, (3, 3), 1, 1, 2),     # groups, images split unevenly over two threads
])
def test_the_weight_gradient_splits_wide_images_over_the_threads(n, c, o, hw, k, stride,
                                                                   pad, groups):
    """A weight gradient whose images each make a wide GEMM: each thread builds its own
    images' columns and sums their GEMMs into its own partial (conv_gemm_grad.py),
    against a float64 oracle; exactly the scratch it declares."""
    from graphcnn.backends.cpu import candidates
    from graphcnn.backends.cpu.kernels import conv_gemm

    rng = np.random.default_rng(hw)
    attrs = dict(UNPADDED, groups=groups, kernel_hw=k, stride=(stride, stride),
                 padding=(pad,) * 4)
    oh = (hw + 2 * pad - k[0]) // stride + 1
    x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
    dy = rng.standard_normal((n, o, oh, oh)).astype(np.float32)
    f32 = np.dtype(np.float32)
    site = Site("conv2d_weight_grad", attrs, (dy.shape, x.shape), (f32, f32),
                (o, c // groups, *k), f32, (None, None))
    gemm = next(cand for cand in candidates._GRAD_GEMMS if cand.name == "gemm")
    conv_gemm.release_workspaces()
    dw = np.full((o, c // groups, *k), np.nan, np.float32)
    gemm.build(site).run([dy, x], dw)
    want = weight_grad_oracle(dy, x, groups, k, (stride, stride), (pad,) * 4)
    np.testing.assert_allclose(dw, want, rtol=1e-5, atol=1e-4)
    assert conv_gemm.held_workspace_bytes() == conv_gemm.layout_bytes(gemm.scratch(site))
    split = conv_gemm.image_split_parts(n, c // groups * k[0] * k[1], oh * oh, 4)
    assert (split > 0) == (oh * oh >= conv_gemm.WIDE_ENOUGH_COLUMNS and numba_threads() > 1)


def numba_threads() -> int:
    import numba
    return numba.get_num_threads()


@pytest.mark.parametrize("n, c, o, hw, groups", [(5, 24, 16, 7, 1), (1, 8, 12, 3, 1),
                                                 (4, 6, 4, 5, 2)])
def test_the_1x1_input_gradient_writes_each_image_whole(n, c, o, hw, groups):
    """A 1x1 stride-1 conv's input gradient on the gemm candidate: W.T @ dy[n] straight
    into dx[n] (blas.matmul_batched), no scratch, against a float64 oracle."""
    from graphcnn.backends.cpu import candidates
    from graphcnn.backends.cpu.kernels import conv_gemm

    rng = np.random.default_rng(n)
    dy = rng.standard_normal((n, o, hw, hw)).astype(np.float32)
    w = rng.standard_normal((o, c // groups, 1, 1)).astype(np.float32)
    attrs = dict(UNPADDED, groups=groups, input_hw=(hw, hw))
    f32 = np.dtype(np.float32)
    site = Site("conv2d_input_grad", attrs, (dy.shape, w.shape), (f32, f32),
                (n, c, hw, hw), f32, (None, None))
    gemm = next(cand for cand in candidates._GRAD_GEMMS if cand.name == "gemm")
    og = o // groups
    want = np.concatenate([np.einsum("nohw,oc->nchw", dy[:, g * og:(g + 1) * og].astype(
        np.float64), w[g * og:(g + 1) * og, :, 0, 0]) for g in range(groups)], axis=1)
    conv_gemm.release_workspaces()
    dx = np.full((n, c, hw, hw), np.nan, np.float32)
    gemm.build(site).run([dy, w], dx)
    np.testing.assert_allclose(dx, want, rtol=1e-5, atol=1e-4)
    assert gemm.scratch(site) == {} and conv_gemm.held_workspace_bytes() == 0


@pytest.mark.parametrize("n, c, o, hw, k, stride, pad, groups", [
    (3, 4, 8, 24, (3, 3), 2, 1, 1),     # 12x12 = 144 output pixels: split by images
    (5, 4, 6, 26, (3, 3), 2, 1, 1),     # ... five images, unevenly over two threads
    (3, 6, 8, 24, (1, 1), 2, 0, 1),     # a ResNet downsample, 1x1 stride 2
    (3, 4, 8, 14, (3, 3), 2, 1, 1),     # 7x7 = 49 output pixels: one GEMM a chunk
    (3, 4, 8, 24, (3, 3), 2, 1, 2),     # groups: one GEMM a chunk
])
def test_the_input_gradient_splits_wide_images_over_the_threads(n, c, o, hw, k, stride, pad,
                                                                 groups):
    """A strided conv's input gradient on the gemm candidate: where each image has
    INPUT_GRAD_COLUMNS output pixels, each thread multiplies its own images and scatters
    their columns into dx (conv_gemm_grad._input_grad_images); against the reference's VJP
    in float64, with exactly the scratch it declares."""
    from graphcnn.backends.cpu import candidates
    from graphcnn.backends.cpu.kernels import conv_gemm
    from graphcnn.ops.conv import conv2d_input_grad_ref

    rng = np.random.default_rng(hw + n)
    attrs = dict(UNPADDED, groups=groups, kernel_hw=k, stride=(stride, stride),
                 padding=(pad,) * 4, input_hw=(hw, hw))
    oh = (hw + 2 * pad - k[0]) // stride + 1
    dy = rng.standard_normal((n, o, oh, oh)).astype(np.float32)
    w = rng.standard_normal((o, c // groups, *k)).astype(np.float32)
    f32 = np.dtype(np.float32)
    site = Site("conv2d_input_grad", attrs, (dy.shape, w.shape), (f32, f32),
                (n, c, hw, hw), f32, (None, None))
    gemm = next(cand for cand in candidates._GRAD_GEMMS if cand.name == "gemm")
    conv_gemm.release_workspaces()
    dx = np.full((n, c, hw, hw), np.nan, np.float32)
    gemm.build(site).run([dy, w], dx)
    ref_attrs = {key: attrs[key] for key in ("stride", "padding", "dilation", "groups")}
    want = conv2d_input_grad_ref(dy.astype(np.float64), w.astype(np.float64), (hw, hw),
                                 **ref_attrs)
    np.testing.assert_allclose(dx, want, rtol=1e-5, atol=1e-4)
    assert conv_gemm.held_workspace_bytes() == conv_gemm.layout_bytes(gemm.scratch(site))
    split = conv_gemm.image_split_parts(n, c // groups * k[0] * k[1], oh * oh, 4,
                                        conv_gemm.INPUT_GRAD_COLUMNS)
    assert (split > 0) == (oh * oh >= conv_gemm.INPUT_GRAD_COLUMNS and numba_threads() > 1)
    if split and groups == 1:   # one image's columns per thread
        assert gemm.scratch(site)["col"] == split * c * k[0] * k[1] * oh * oh * 4


def test_lenet5_c1_weight_gradient_takes_the_wide_kernel():
    """Six filters of one channel: too little work for a GEMM, stride 1 unpadded."""
    shapes = ((64, 6, 28, 28), (64, 1, 32, 32))
    site = Site("conv2d_weight_grad", dict(UNPADDED, kernel_hw=(5, 5)), shapes,
                (np.dtype(np.float32),) * 2, (6, 1, 5, 5), np.dtype(np.float32), (None, None))
    chosen, why = choose(site)
    assert chosen.name == "direct-wide" and "one dot per tap" in why
    padded = dict(site.attrs, padding=(2, 2, 2, 2))
    site = Site("conv2d_weight_grad", padded, ((64, 6, 32, 32), (64, 1, 32, 32)),
                site.in_dtypes, (6, 1, 5, 5), site.out_dtype, (None, None))
    assert choose(site)[0].name == "direct"
    # MobileNetV2's depthwise 3x3 layers
    site = Site("conv2d_weight_grad", dict(padded, padding=(1, 1, 1, 1), groups=96,
                                           kernel_hw=(3, 3), stride=(2, 2)),
                ((16, 96, 56, 56), (16, 96, 112, 112)), site.in_dtypes, (96, 1, 3, 3),
                site.out_dtype, (None, None))
    assert choose(site)[0].name == "depthwise-3x3"


@pytest.mark.parametrize("kwargs", [
    dict(lr=0.05), dict(lr=0.05, weight_decay=1e-2), dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
    dict(lr=0.02, momentum=0.5, dampening=0.3, weight_decay=0.1),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_one_pass_sgd_update_is_bitwise_the_numpy_one(monkeypatch, kwargs, dtype):
    """SGD's fused kernel (graphcnn/optim/sgd_kernel.py) against its NumPy path, over
    three steps (the momentum buffer's first and later ones), NaN and inf included."""
    from graphcnn.optim import SGD, sgd_kernel

    rng = np.random.default_rng(2)
    params = {"w": rng.standard_normal((5, 3, 2)).astype(dtype),
              "b": rng.standard_normal(7).astype(dtype)}
    params["b"][3], params["w"][0, 0, 0] = np.inf, np.nan
    grads = [{k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
             for _ in range(3)]
    fused = {k: v.copy() for k, v in params.items()}
    opt = SGD(**kwargs)
    for g in grads:
        opt.step(fused, g)
    monkeypatch.setattr(sgd_kernel, "fits", lambda p, g: False)
    plain = {k: v.copy() for k, v in params.items()}
    opt = SGD(**kwargs)
    with np.errstate(invalid="ignore"):   # inf - inf: NumPy warns, the kernel does not
        for g in grads:
            opt.step(plain, g)
    for k in params:
        assert fused[k].dtype == dtype
        np.testing.assert_array_equal(fused[k], plain[k])
    assert not np.array_equal(fused["b"], params["b"])   # it did update


def test_lenet5_training_step_kernels_and_gradients_against_the_reference():
    """The whole training graph at opt level 2 on the cpu: 27 kernels, c1's weight
    gradient on the wide kernel, and loss and gradients those of the reference backend
    at opt level 0 (1e-4 of each gradient's largest value)."""
    import graphcnn as gc

    model = gc.models.lenet5()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 1, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 4)
    step = gc.value_and_grad(model, batch_size=4, backend="cpu")
    reference = gc.value_and_grad(model, batch_size=4, backend="reference", opt_level=0)
    runner = step.executable.runner
    assert step.report()["kernels"] == len(runner.steps) == 27
    assert ("conv2d_weight_grad", "direct-wide") in {(s.op, s.implementation)
                                                     for s in runner.steps}
    loss, grads = step(x, y)
    want_loss, want = reference(x, y)
    assert abs(loss - want_loss) <= 1e-5 * abs(want_loss)
    assert sorted(grads) == sorted(want)
    for name, g in want.items():
        np.testing.assert_allclose(grads[name], g, rtol=0, atol=1e-4 * np.abs(g).max(),
                                   err_msg=name)


def test_mobilenet_v2_training_step_with_the_depthwise_gradients():
    """A small MobileNetV2 (width 0.25, 64x64, no dropout): its 17 depthwise weight
    gradients, 13 stride-1 and 4 stride-2 input gradients on the depthwise kernels, and loss and
    gradients those of the step that runs them on the generic direct kernels (1e-4 of each gradient's largest value). (Against
    the reference the whole network differs by about 1% at batch 4 on either kernel: batch
    norm over four images amplifies float32 rounding; the kernel itself is checked against
    a float64 oracle above.)"""
    import graphcnn as gc
    from graphcnn.backends.cpu.strategy import forced

    model = gc.models.mobilenet_v2(10, width_mult=0.25, input_size=64, dropout=0.0)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((4, 3, 64, 64)).astype(np.float32)
    y = rng.integers(0, 10, 4)
    params = {k: v.copy() for k, v in model.parameters().items()}
    step = gc.value_and_grad(model, batch_size=4, backend="cpu")
    chosen = [(s.op, s.implementation, s.attrs.get("anchor"))
              for s in step.executable.runner.steps]
    assert chosen.count(("conv2d_weight_grad", "depthwise-3x3", None)) == 17
    # the stride-1 layers' input gradients, fused with ReLU6's gradient (clip_grad)
    assert chosen.count(("fused", "depthwise-3x3", "conv2d_input_grad")) == 13
    # the stride-2 layers' (the first depthwise layer's input is the stem's: no gradient)
    assert chosen.count(("fused", "depthwise-3x3-s2", "conv2d_input_grad")) == 4
    with forced({"conv2d_weight_grad": "direct", "conv2d_input_grad": "direct"}):
        direct = gc.value_and_grad(model, batch_size=4, backend="cpu")
    loss, grads = step(x, y)
    model.load_parameters(params)   # the running statistics as the other step starts
    want_loss, want = direct(x, y)
    assert abs(loss - want_loss) <= 1e-5 * abs(want_loss)
    # A batch norm's bias followed by a 1x1 conv and batch norm has a zero gradient (the
    # next batch norm removes any constant shift): its values are rounding, so the scale
    # has a floor, 1% of the largest gradient's.
    floor = 1e-2 * max(np.abs(g).max() for g in want.values())
    for name, g in want.items():
        np.testing.assert_allclose(grads[name], g, rtol=0,
                                   atol=1e-4 * max(np.abs(g).max(), floor), err_msg=name)
