"""conv2d, pooling and their gradient ops: cpu vs reference over randomized shapes and
attributes, gradients vs finite differences, and PyTorch's exact pooling semantics."""
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from op_check import check_op, forward

from graphcnn.errors import GraphBuildError
from graphcnn.ir import Graph
from graphcnn.ops.window import pool_out_size


def rand(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


@st.composite
def conv_case(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg, og = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    n = draw(st.integers(1, 2))
    h, w = draw(st.integers(3, 7)), draw(st.integers(3, 7))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = draw(st.one_of(st.integers(0, 2), st.tuples(st.integers(0, 2), st.integers(0, 2)),
                             st.tuples(*[st.integers(0, 2)] * 4), st.sampled_from(["same", "valid"])))
    pads = {"same": (2, 2, 2, 2), "valid": (0, 0, 0, 0)}.get(padding, padding)
    pads = (pads,) * 4 if isinstance(pads, int) else pads
    pads = pads if len(pads) == 4 else (pads[0], pads[0], pads[1], pads[1])
    assume(dilation[0] * (kh - 1) + 1 <= h + pads[0] + pads[1])
    assume(dilation[1] * (kw - 1) + 1 <= w + pads[2] + pads[3])
    bias = draw(st.booleans())
    attrs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return (n, cg * groups, h, w), (og * groups, cg, kh, kw), bias, attrs


@given(case=conv_case(), seed=st.integers(0, 2**16))
def test_conv2d(case, seed):
    x_shape, w_shape, bias, attrs = case
    rng = np.random.default_rng(seed)
    arrays = [rand(rng, x_shape), rand(rng, w_shape)] + ([rand(rng, w_shape[:1])] if bias else [])
    check_op("conv2d", arrays, attrs)


@given(channels=st.integers(2, 5), n=st.integers(1, 2), h=st.integers(1, 9),
       w=st.integers(1, 9), stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       pads=st.tuples(*[st.integers(0, 2)] * 4), bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_depthwise_3x3_conv2d(channels, n, h, w, stride, pads, bias, seed):
    """MobileNet's depthwise 3x3 convolutions have their own cpu kernel (depthwise.py),
    through a zero-padded scratch plane split by stride phase (stride 2 with its own
    paired-column fill): every stride 1-3 and asymmetric padding against the reference."""
    assume(h + pads[0] + pads[1] >= 3 and w + pads[2] + pads[3] >= 3)
    rng = np.random.default_rng(seed)
    arrays = [rand(rng, (n, channels, h, w)), rand(rng, (channels, 1, 3, 3))]
    arrays += [rand(rng, (channels,))] if bias else []
    attrs = dict(stride=stride, padding=pads, dilation=(1, 1), groups=channels)
    check_op("conv2d", arrays, attrs)


@given(channels=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(44, 70),
       stride=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       pads=st.tuples(*[st.integers(0, 2)] * 4), bias=st.booleans(), seed=st.integers(0, 2**16))
def test_depthwise_3x3_conv2d_on_long_rows(channels, h, w, stride, pads, bias, seed):
    """Rows of 48 outputs or more run row by row as the input rows arrive, the last block
    of each row overlapping the one before (depthwise._rolling_task); from 16 outputs a
    plane, stride 1 and padding 1, shorter rows run flat (_flat_task): both against the
    reference, across the 48-output edge."""
    assume(h + pads[0] + pads[1] >= 3)
    rng = np.random.default_rng(seed)
    arrays = [rand(rng, (2, channels, h, w)), rand(rng, (channels, 1, 3, 3))]
    arrays += [rand(rng, (channels,))] if bias else []
    attrs = dict(stride=stride, padding=pads, dilation=(1, 1), groups=channels)
    check_op("conv2d", arrays, attrs, grad=False)


@given(n=st.integers(1, 2), groups=st.sampled_from([1, 2]), h=st.integers(3, 10),
       w=st.integers(3, 10), kh=st.integers(1, 3), kw=st.integers(1, 3), bias=st.booleans(),
       seed=st.integers(0, 2**16))
def test_unpadded_stride1_conv_wide_kernel(n, groups, h, w, kh, kw, bias, seed):
    """Stride 1, no padding or dilation (LeNet-5's c1): the direct kernel that runs each tap
    over the output rows laid end to end (conv._conv2d_wide) equals the reference."""
    from graphcnn.ops.conv_shapes import is_unpadded_unit_stride
    attrs = dict(stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=groups)
    assert is_unpadded_unit_stride(attrs)
    assert not is_unpadded_unit_stride(dict(attrs, padding=(1, 1, 1, 1)))
    rng = np.random.default_rng(seed)
    arrays = [rand(rng, (n, 2 * groups, h, w)), rand(rng, (2 * groups, 2, kh, kw))]
    check_op("conv2d", arrays + ([rand(rng, (2 * groups,))] if bias else []), attrs)


def test_conv2d_depthwise_and_same_padding_shapes():
    g = Graph()
    x = g.input("x", (2, 8, 9, 9))
    y = g.add("conv2d", [x, g.input("w", (8, 1, 3, 3))], groups=8, padding="same")
    assert y.shape == (2, 8, 9, 9) and y.node.attrs["padding"] == (1, 1, 1, 1)
    y2 = g.add("conv2d", [x, g.input("w2", (4, 8, 3, 3))], stride=2, padding="same")
    assert y2.shape == (2, 4, 5, 5)  # ceil(9 / 2), as Keras/TensorFlow
    y3 = g.add("conv2d", [x, g.input("w3", (4, 8, 4, 4))], padding="same")
    assert y3.shape[2:] == (9, 9) and y3.node.attrs["padding"] == (1, 2, 1, 2)


@pytest.mark.parametrize("op", ["conv2d_input_grad", "conv2d_weight_grad"])
@given(case=conv_case(), seed=st.integers(0, 2**16))
def test_conv2d_gradient_ops(op, case, seed):
    """The gradient ops themselves: forward cpu vs reference, and their own VJPs (built
    from the adjoint identities) against finite differences."""
    x_shape, w_shape, _, attrs = case
    rng = np.random.default_rng(seed)
    g = Graph()
    y = g.add("conv2d", [g.input("x", x_shape), g.input("w", w_shape)], **attrs)
    attrs = dict(y.node.attrs)  # canonical padding
    dy = rand(rng, y.shape)
    if op == "conv2d_input_grad":
        check_op(op, [dy, rand(rng, w_shape)], dict(attrs, input_hw=x_shape[2:]))
    else:
        check_op(op, [dy, rand(rng, x_shape)], dict(attrs, kernel_hw=w_shape[2:]))


def test_conv2d_matches_a_direct_loop():
    """An independent oracle for the reference itself: the definition, written as loops."""
    rng = np.random.default_rng(0)
    x, w, b = rand(rng, (1, 4, 6, 5)), rand(rng, (2, 2, 3, 2)), rand(rng, (2,))
    attrs = dict(stride=(2, 1), padding=(1, 0, 2, 1), dilation=(1, 2), groups=2)
    (y,) = forward("conv2d", [x, w, b], attrs, "reference", "float64")
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 0), (2, 1)))
    want = np.zeros_like(y)
    for o in range(2):
        c0 = o  # groups=2, one output channel per group, two input channels each
        for oy in range(y.shape[2]):
            for ox in range(y.shape[3]):
                patch = xp[0, 2 * c0:2 * c0 + 2, oy * 2:oy * 2 + 3, ox:ox + 3:2]
                want[0, o, oy, ox] = (patch * w[o]).sum() + b[o]
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)


@st.composite
def pool_case(draw, dilation: bool):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = (draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2)))
    attrs = dict(kernel_size=(kh, kw), stride=stride, padding=padding,
                 ceil_mode=draw(st.booleans()))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilation else (1, 1)
    if dilation:
        attrs["dilation"] = dil
    h, w = draw(st.integers(2, 7)), draw(st.integers(2, 7))
    assume(dil[0] * (kh - 1) + 1 <= h + 2 * padding[0])
    assume(dil[1] * (kw - 1) + 1 <= w + 2 * padding[1])
    return (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w), attrs


@given(case=pool_case(dilation=True), seed=st.integers(0, 2**16))
def test_max_pool2d(case, seed):
    shape, attrs = case
    # Distinct values: no ties, so finite differences see a smooth function.
    x = np.random.default_rng(seed).permutation(np.prod(shape)).reshape(shape)
    x = (x / 7.0 - 3.0).astype(np.float32)
    check_op("max_pool2d", [x], attrs)
    g = Graph()
    y = g.add("max_pool2d", [g.input("x", shape)], **attrs)
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(np.float32)
    check_op("max_pool2d_grad", [dy, x], dict(y.node.attrs), grad=False)


@given(kh=st.integers(1, 3), stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       padding=st.tuples(st.integers(0, 1), st.integers(0, 1)), ceil_mode=st.booleans(),
       h=st.integers(3, 9), w=st.integers(3, 9), seed=st.integers(0, 2**16))
def test_max_pool2d_width3_windows(kh, stride, padding, ceil_mode, h, w, seed):
    """Windows three wide (ResNet's 3x3/2 stem pool) take their own forward kernel, and
    3x3 ones at stride 1 or 2 their own gradient kernel: checked here, ties included."""
    assume(padding[0] <= kh // 2)
    x = np.random.default_rng(seed).permutation(2 * 3 * h * w).reshape(2, 3, h, w)
    attrs = dict(kernel_size=(kh, 3), stride=stride, padding=padding, ceil_mode=ceil_mode)
    x = (x / 5.0 - 2.0).astype(np.float32)
    check_op("max_pool2d", [x], attrs)
    g = Graph()
    y = g.add("max_pool2d", [g.input("x", x.shape)], **attrs)
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(np.float32)
    check_op("max_pool2d_grad", [dy, x], dict(y.node.attrs), grad=False)
    # Ties (ReLU's zeros): the first maximum in row-major order takes the gradient.
    zeros = np.zeros_like(x)
    (want,) = forward("max_pool2d_grad", [dy, zeros], dict(y.node.attrs), "reference")
    (got,) = forward("max_pool2d_grad", [dy, zeros], dict(y.node.attrs), "cpu")
    # The same taps take the gradients; overlapping windows may add them in another order.
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@given(case=pool_case(dilation=False), include_pad=st.booleans(), seed=st.integers(0, 2**16))
def test_avg_pool2d(case, include_pad, seed):
    shape, attrs = case
    attrs["count_include_pad"] = include_pad
    rng = np.random.default_rng(seed)
    check_op("avg_pool2d", [rand(rng, shape)], attrs)
    g = Graph()
    y = g.add("avg_pool2d", [g.input("x", shape)], **attrs)
    check_op("avg_pool2d_grad", [rand(rng, y.shape)], dict(y.node.attrs, input_hw=shape[2:]))


def test_max_pool_ties_send_the_gradient_to_the_first_maximum():
    x = np.ones((1, 1, 2, 2), np.float32)
    dy = np.full((1, 1, 1, 1), 5.0, np.float32)
    for backend in ("reference", "cpu"):
        (dx,) = forward("max_pool2d_grad", [dy, x], dict(kernel_size=2), backend)
        np.testing.assert_array_equal(dx[0, 0], [[5, 0], [0, 0]])


def test_pool_output_sizes_follow_pytorch():
    # torch.nn.MaxPool2d(3, 2, ceil_mode=True) on 6 -> 3 (the last window starts inside)
    assert pool_out_size(6, 0, 3, 2, 1, True) == 3
    assert pool_out_size(6, 0, 3, 2, 1, False) == 2
    # padding 1, kernel 2, stride 2, ceil: a window would start in the right padding -> dropped
    assert pool_out_size(5, 1, 2, 2, 1, True) == 3
    assert pool_out_size(112, 1, 3, 2, 1, False) == 56


def test_avg_pool_divisors_follow_pytorch():
    """Values worked by hand from PyTorch's avg_pool2d for a 1x1x3x3 input of ones:
    with padding 1 and count_include_pad=True every border window divides by 4 but sums
    fewer ones; ceil_mode windows that hang past the padding divide by the clipped size."""
    x = np.ones((1, 1, 3, 3), np.float32)
    (y,) = forward("avg_pool2d", [x], dict(kernel_size=2, stride=2, padding=1), "cpu")
    np.testing.assert_allclose(y[0, 0], [[0.25, 0.5], [0.5, 1.0]])
    (y,) = forward("avg_pool2d", [x], dict(kernel_size=2, stride=2, padding=1,
                                           count_include_pad=False), "cpu")
    np.testing.assert_allclose(y[0, 0], np.ones((2, 2)))
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    (y,) = forward("avg_pool2d", [x], dict(kernel_size=2, stride=2, ceil_mode=True), "cpu")
    # the last column of windows covers only column 4: divisor 2 (clipped), not 4
    np.testing.assert_allclose(y[0, 0, 0], [3.0, 5.0, 6.5])


@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 5),
                       st.integers(1, 5)), seed=st.integers(0, 2**16))
def test_global_avg_pool2d(shape, seed):
    check_op("global_avg_pool2d", [rand(np.random.default_rng(seed), shape)])


# ---- build-time errors ------------------------------------------------------------------

def test_conv_channel_mismatch_names_shapes():
    g = Graph()
    x = g.input("x", (1, 3, 8, 8))
    with pytest.raises(GraphBuildError, match=r"conv2d: input has 3 channels .*expects 4"):
        g.add("conv2d", [x, g.input("w", (6, 4, 3, 3))])


def test_conv_groups_must_divide_channels():
    g = Graph()
    x = g.input("x", (1, 6, 8, 8))
    with pytest.raises(GraphBuildError, match=r"groups=4 must divide"):
        g.add("conv2d", [x, g.input("w", (8, 2, 3, 3))], groups=4)


def test_kernel_larger_than_padded_input():
    g = Graph()
    x = g.input("x", (1, 1, 4, 4))
    with pytest.raises(GraphBuildError, match=r"kernel \(5, 5\) is larger than the padded input"):
        g.add("conv2d", [x, g.input("w", (1, 1, 5, 5))])
    with pytest.raises(GraphBuildError, match=r"max_pool2d: kernel \(3, 3\) \(dilated to \(5, 5\)\)"):
        g.add("max_pool2d", [x], kernel_size=3, dilation=2)


def test_bad_attributes():
    g = Graph()
    x = g.input("x", (1, 1, 4, 4))
    w = g.input("w", (1, 1, 3, 3))
    with pytest.raises(GraphBuildError, match="padding must be"):
        g.add("conv2d", [x, w], padding="full")
    with pytest.raises(GraphBuildError, match="stride must be >= 1"):
        g.add("conv2d", [x, w], stride=0)
    with pytest.raises(GraphBuildError, match="at most half the kernel"):
        g.add("max_pool2d", [x], kernel_size=2, padding=2)


def test_dsl_conv_error_points_at_the_user_line():
    import graphcnn as gc
    from graphcnn import nn
    x = gc.Input((3, 8, 8))
    with pytest.raises(gc.GraphBuildError, match=r"conv2d: .*test_conv_pool_ops\.py:\d+"):
        nn.Conv2d(4, 8, 3)(x)
    with pytest.raises(gc.GraphBuildError, match=r"groups=3 must divide"):
        nn.Conv2d(4, 8, 3, groups=3)


# ---- the im2col + GEMM algorithm (chosen by a cost model for big layers) ------------------

@pytest.fixture
def force_gemm(monkeypatch):
    from graphcnn.backends.cpu.kernels import conv_gemm
    monkeypatch.setattr(conv_gemm, "use_gemm", lambda *args: True)


@given(case=conv_case(), seed=st.integers(0, 2**16))
def test_conv2d_gemm_algorithm(case, seed):
    """Every conv op through im2col + GEMM (1x1 convs without im2col) equals the reference:
    forward, and the input and weight gradients (check_op runs them on cpu too)."""
    from graphcnn.backends.cpu.kernels import conv_gemm
    x_shape, w_shape, bias, attrs = case
    rng = np.random.default_rng(seed)
    arrays = [rand(rng, x_shape), rand(rng, w_shape)] + ([rand(rng, w_shape[:1])] if bias else [])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(conv_gemm, "use_gemm", lambda *args: True)
        check_op("conv2d", arrays, attrs)


@given(case=conv_case(), seed=st.integers(0, 2**16), block_bytes=st.sampled_from([64, 4096]))
def test_conv2d_cache_blocked_gemm_algorithm(case, seed, block_bytes):
    """The forward GEMM path that builds im2col columns block by block, each block right
    before its GEMM (conv_gemm._conv_blocks), forced on every shape and cut into blocks as
    narrow as 16 pixels, equals the reference (grouped convs keep the other path)."""
    from graphcnn.backends.cpu import blas
    from graphcnn.backends.cpu.kernels import conv_gemm
    if not blas.AVAILABLE:
        pytest.skip("numpy's OpenBLAS was not found: no cache-blocked path")
    x_shape, w_shape, bias, attrs = case
    rng = np.random.default_rng(seed)
    arrays = [rand(rng, x_shape), rand(rng, w_shape)] + ([rand(rng, w_shape[:1])] if bias else [])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(conv_gemm, "use_gemm", lambda *args: True)
        patch.setattr(conv_gemm, "MIN_CACHE_BLOCKED_PIXELS", 1)
        patch.setattr(conv_gemm, "BLOCK_BYTES", block_bytes)
        check_op("conv2d", arrays, attrs, grad=False)


def test_block_count_fits_the_cache_and_the_threads():
    import numba

    from graphcnn.backends.cpu.kernels.conv_gemm import BLOCK_BYTES, block_count
    threads = numba.get_num_threads()
    for k, p in [(576, 3136), (147, 12544), (1152, 784), (2304, 196), (27, 150)]:
        blocks = block_count(k, p, 4)
        assert blocks % threads == 0
        width = -(-p // blocks)
        assert width >= 16 or blocks == threads
        assert k * width * 4 <= max(BLOCK_BYTES, k * 16 * 4) or blocks == threads


@pytest.mark.parametrize("stride", [1, 2])
def test_full_window_conv_runs_as_one_dense_gemm(force_gemm, stride):
    """A window as large as the input (LeNet-5's c5) is a dense layer: one GEMM over the
    flattened images, forward and both gradients, equal to the reference."""
    from graphcnn.backends.cpu.kernels.conv_gemm import is_full_window
    attrs = dict(stride=stride, padding=0, dilation=1, groups=1)
    full = dict(stride=(stride, stride), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1)
    assert is_full_window((64, 16, 5, 5), (120, 16, 5, 5), full)
    assert not is_full_window((64, 16, 5, 5), (120, 16, 3, 3), full)
    assert not is_full_window((64, 16, 5, 5), (120, 16, 5, 5), dict(full, padding=(1, 1, 1, 1)))
    rng = np.random.default_rng(0)
    check_op("conv2d", [rand(rng, (5, 3, 4, 5)), rand(rng, (7, 3, 4, 5)), rand(rng, (7,))], attrs)


def test_gemm_batches_small_images_only(force_gemm):
    """Images of 512+ output pixels get one GEMM each, smaller ones share one; both ways
    (and the gradients) equal the reference."""
    from graphcnn.backends.cpu.kernels.conv_gemm import image_chunks
    assert image_chunks(3, 9, 576, 4) == [(0, 1), (1, 1), (2, 1)]
    assert image_chunks(64, 150, 100, 4) == [(0, 40), (40, 24)]  # LeNet's c3: 4000 columns
    rng = np.random.default_rng(0)
    attrs = dict(stride=1, padding=1, dilation=1, groups=1)
    for x_shape in [(3, 2, 24, 24), (3, 2, 6, 6)]:
        check_op("conv2d", [rand(rng, x_shape), rand(rng, (3, 2, 3, 3))], attrs)


def test_gemm_path_inside_a_fused_group(force_gemm):
    """conv(+bias) computed by GEMM, then bias + add + relu in the generated epilogue."""
    import graphcnn as gc
    from graphcnn import nn
    x = gc.Input((4, 6, 6), name="x")
    skip = gc.Input((8, 6, 6), name="skip")
    y = gc.relu(nn.Conv2d(4, 8, 3, padding=1)(x) + skip)
    model = gc.Model([x, skip], y)
    rng = np.random.default_rng(0)
    xs, ss = rand(rng, (2, 4, 6, 6)), rand(rng, (2, 8, 6, 6))
    fast = gc.compile(model, batch_size=2, opt_level=2)
    assert fast.report()["kernels"] == 1
    want = gc.compile(model, batch_size=2, backend="reference", opt_level=0)(xs, ss)
    np.testing.assert_allclose(fast(xs, ss), want, rtol=1e-4, atol=1e-5)


def test_cost_model_picks_gemm_for_big_layers_only():
    from graphcnn.backends.cpu.kernels.conv_gemm import use_gemm
    attrs = dict(stride=(1, 1), padding=(1, 1, 1, 1), dilation=(1, 1), groups=1)
    assert use_gemm((1, 64, 56, 56), (64, 64, 3, 3), (56, 56), attrs)
    assert not use_gemm((64, 1, 32, 32), (6, 1, 5, 5), (28, 28), attrs)  # LeNet c1: direct
    assert use_gemm((64, 6, 14, 14), (16, 6, 5, 5), (10, 10), attrs)     # LeNet c3, batched
    assert not use_gemm((1, 1, 8, 8), (2, 1, 3, 3), (8, 8), attrs)       # too thin a GEMM
    depthwise = dict(attrs, groups=32)
    assert not use_gemm((1, 32, 56, 56), (32, 1, 3, 3), (56, 56), depthwise)


@pytest.mark.parametrize("n, c, h, w", [(1, 5, 7, 7), (3, 17, 14, 14), (2, 3, 6, 9), (1, 2, 3, 5),
                                        (2, 19, 8, 8)])
@pytest.mark.parametrize("k, stride, padding, ceil_mode", [
    (3, 1, 1, False), (3, 2, 0, True), (3, 2, 1, False), (2, 2, 0, True), (3, 2, 1, True),
    ((2, 3), (1, 2), (1, 1), True), (5, 1, 2, False), (1, 2, 0, False), (3, 3, 1, False)])
def test_max_pool2d_grad_equals_the_reference_bitwise(n, c, h, w, k, stride, padding,
                                                       ceil_mode):
    """The row kernel of the gradient (3x3 windows at stride 1 and 2 in vector lanes, the
    rest per window): the same input takes each window's gradient as in the reference
    (the first maximum; signed-zero and -inf ties, a NaN plane), integer gradients so
    that overlapping windows' sums are exact in any order."""
    rng = np.random.default_rng(h * w + c)
    x = rng.choice(np.float32([-1.5, -0.0, 0.0, 0.5, 2.0, -np.inf]), (n, c, h, w))
    x[0, 0, rng.integers(h), rng.integers(w)] = np.nan  # one plane takes the NaN-aware loop
    attrs = dict(kernel_size=k, stride=stride, padding=padding, ceil_mode=ceil_mode)
    g = Graph()
    y = g.add("max_pool2d", [g.input("x", x.shape)], **attrs)
    dy = rng.integers(-8, 9, y.shape).astype(np.float32)
    (want,) = forward("max_pool2d_grad", [dy, x], dict(y.node.attrs), "reference")
    (got,) = forward("max_pool2d_grad", [dy, x], dict(y.node.attrs), "cpu")
    assert want.tobytes() == got.tobytes()


@pytest.mark.parametrize("n, c, h, w", [(1, 5, 7, 7), (3, 17, 14, 14), (2, 3, 6, 9), (1, 2, 3, 5),
                                        (2, 19, 8, 8)])
@pytest.mark.parametrize("k, stride, padding, ceil_mode", [
    (3, 1, 1, False), (3, 2, 0, True), (3, 2, 1, False), (2, 2, 0, True), (3, 2, 1, True),
    ((2, 3), (1, 2), (1, 1), True), (5, 1, 2, False), (1, 2, 0, False)])
def test_separable_max_pool2d_equals_the_reference_bitwise(n, c, h, w, k, stride, padding,
                                                            ceil_mode):
    """The separable kernel (rows then columns, blocks of planes joined into one flat
    loop): equal to the reference bit for bit, signed-zero ties and NaN planes included."""
    rng = np.random.default_rng(h * w + c)
    x = rng.choice(np.float32([-1.5, -0.0, 0.0, 0.5, 2.0, -np.inf]), (n, c, h, w))
    x[0, 0, rng.integers(h), rng.integers(w)] = np.nan  # one plane takes the NaN-aware loop
    attrs = dict(kernel_size=k, stride=stride, padding=padding, ceil_mode=ceil_mode)
    (want,) = forward("max_pool2d", [x], attrs, "reference")
    (got,) = forward("max_pool2d", [x], attrs, "cpu")
    assert want.tobytes() == got.tobytes()


@pytest.mark.parametrize("dilation, nan_plane", [(1, False), (1, True), (2, False)])
def test_max_pool_gradient_applies_the_relus_mask_as_it_stores(dilation, nan_plane):
    """max_pool2d_grad + relu_grad (ResNet's stem, backwards): the pool's gradient kernel
    masks each plane as it writes it, no second pass, equal to the reference: a window
    whose maximum is a relu's zero gets no gradient, a NaN in y passes it (relu_grad's
    formula), the planes with a NaN take the NaN-aware loop, dilated windows a pass after."""
    from graphcnn.ir.graph import Graph
    from graphcnn.passes.fusion import fuse_operators
    from graphcnn.runtime.executable import make_runner

    rng = np.random.default_rng(11)
    g = Graph("pool_grad_mask")
    out = 5 if dilation == 1 else 4
    dy, y = g.input("dy", (2, 3, out, out)), g.input("y", (2, 3, 9, 9))
    grad = g.add("max_pool2d_grad", [dy, y], kernel_size=3, stride=2, padding=1,
                 dilation=dilation)
    g.set_outputs([g.add("relu_grad", [grad, y])])
    y_value = np.maximum(rng.standard_normal((2, 3, 9, 9)), 0).astype(np.float32)
    y_value[0, 1, :4, :4] = 0.0  # whole windows of zeros: their maximum is a zero
    if nan_plane:
        y_value[1, 2, 4, 4] = np.nan
    feeds = {dy.id: rng.standard_normal((2, 3, out, out)).astype(np.float32), y.id: y_value}
    runner = make_runner(fuse_operators(g), "cpu")
    got = runner.run(feeds)[0]
    [(_, op, _, why)] = runner.implementations()
    assert op == "fused" and "relu_grad mask applied as it stores" in why
    want = make_runner(g, "reference").run(feeds)[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert (want != 0).any() and ((y_value == 0) & (want == 0)).any()
