"""The packed GEMM convs with the images split over the threads (kernels/packed_images.py):
the same bits as the image-by-image kernels (channels in the lanes, and pixels in the
lanes with bias and epilogue), the reference's values, and exactly the scratch they
declare."""
import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphcnn.backends.cpu.kernels import conv_gemm, packed_gemm, packed_images
from graphcnn.backends.cpu.kernels.nchw16c_conv import Epilogue
from graphcnn.backends.cpu.kernels.vector_ir import ADD_SIDE, CLIP, RELU
from graphcnn.ops.conv import conv2d_ref

SHAPES = dict(n=st.sampled_from([2, 4, 9]), c=st.integers(1, 20), o=st.integers(1, 40),
              hw=st.integers(3, 15), kernel=st.sampled_from([(1, 1, 0), (1, 2, 0), (3, 1, 1),
                                                             (3, 2, 1), (5, 2, 2)]),
              seed=st.integers(0, 2**16))


def case(n, c, o, hw, kernel, seed):
    """x, w, attrs and the output's side of a one-group conv."""
    k, stride, pad = kernel
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
    w = rng.standard_normal((o, c, k, k)).astype(np.float32)
    attrs = dict(stride=(stride, stride), padding=(pad,) * 4, dilation=(1, 1), groups=1)
    return x, w, attrs, (hw + 2 * pad - k) // stride + 1


@pytest.mark.parametrize("n, threads, split", [(1, 2, False), (2, 2, True), (3, 2, False),
                                               (8, 2, True), (9, 2, True), (16, 1, False)])
def test_the_batch_is_split_where_every_thread_gets_a_fair_share(n, threads, split):
    assert packed_images.splits_images(n, threads) == split


@settings(deadline=None, max_examples=25)
@given(**SHAPES)
def test_split_by_images_gives_the_image_by_image_kernels_bits(n, c, o, hw, kernel, seed):
    """Both ways run the same tiles in the same order: equal bits, and the reference's
    values (float64 reference, float32 tolerance)."""
    x, w, attrs, oh = case(n, c, o, hw, kernel, seed)
    k, stride = kernel[:2]
    wp = packed_gemm.packed_conv_weights(w, packed_gemm.LANES)
    split = np.full((n, o, oh, oh), np.nan, np.float32)
    each = np.full_like(split, np.nan)
    conv_gemm.release_workspaces()
    packed_images.conv2d_packed_channels(x, w, split, attrs, wp)
    held = conv_gemm.held_workspace_bytes()
    packed_gemm.conv2d_packed_channels(x, w, each, attrs, wp)
    np.testing.assert_array_equal(split, each)
    want = conv2d_ref(x.astype(np.float64), w.astype(np.float64), **attrs)
    np.testing.assert_allclose(split, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    scratch = packed_images.conv_scratch(x.shape, w.shape, (oh, oh), attrs, packed_gemm.LANES)
    assert held == conv_gemm.layout_bytes(conv_gemm.scratch_bytes(scratch))
    if numba.get_num_threads() > 1:
        assert ("col" in scratch) == ((k, stride) != (1, 1))


def epilogue_case(n: int, o: int, oh: int, seed: int, mode: int, bias: bool):
    """(side, Epilogue, bias or None, two outputs full of NaN) for a conv's fused group:
    the residual with a NaN in it, clip bounds -0.5 and 0.75."""
    rng = np.random.default_rng(seed + 1)
    side = rng.standard_normal((n, o, oh, oh)).astype(np.float32)
    side[-1, -1, -1, -1] = np.nan
    epilogue = Epilogue(side if mode & ADD_SIDE else None, mode, -0.5, 0.75)
    b = rng.standard_normal(o).astype(np.float32) if bias else None
    split = np.full((n, o, oh, oh), np.nan, np.float32)
    return side, epilogue, b, split, np.full_like(split, np.nan)


@settings(deadline=None, max_examples=25)
@given(**SHAPES, mode=st.sampled_from([0, RELU, CLIP, ADD_SIDE, ADD_SIDE | RELU]),
       bias=st.booleans())
def test_pixels_in_lanes_split_by_images_gives_the_same_bits(n, c, o, hw, kernel, seed, mode,
                                                             bias):
    """The pixels-in-lanes kernel with bias and a fused group's epilogue (the residual
    with a NaN in it): the image-by-image kernel's bits, its exact scratch."""
    x, w, attrs, oh = case(n, c, o, hw, kernel, seed)
    side, epilogue, b, split, each = epilogue_case(n, o, oh, seed, mode, bias)
    conv_gemm.release_workspaces()
    packed_images.conv2d_packed(x, w, split, attrs, None, b, epilogue)
    held = conv_gemm.held_workspace_bytes()
    packed_gemm.conv2d_packed(x, w, each, attrs, None, b, epilogue)
    np.testing.assert_array_equal(split, each)
    scratch = packed_images.conv_scratch(x.shape, w.shape, (oh, oh), attrs, packed_gemm.MR)
    assert held == conv_gemm.layout_bytes(conv_gemm.scratch_bytes(scratch))


def apply_epilogue(y: np.ndarray, b: np.ndarray | None, side: np.ndarray, mode: int
                   ) -> np.ndarray:
    """The epilogue's arithmetic in float64, in its order: bias, side, clip, relu."""
    if b is not None:
        y = y + b[:, None, None]
    if mode & ADD_SIDE:
        y = y + side
    if mode & CLIP:
        y = np.clip(y, -0.5, 0.75)
    if mode & RELU:
        y = np.where(y <= 0, 0, y)
    return y


@settings(deadline=None, max_examples=25)
@given(**SHAPES, mode=st.sampled_from([0, RELU, CLIP, ADD_SIDE, ADD_SIDE | RELU]),
       bias=st.booleans())
def test_channels_in_lanes_applies_the_epilogue_as_it_stores(n, c, o, hw, kernel, seed, mode,
                                                             bias):
    """The channels-in-lanes kernel with bias and a fused group's epilogue (the residual
    with a NaN in it): the same bits split by images or not; the reference's values."""
    x, w, attrs, oh = case(n, c, o, hw, kernel, seed)
    side, epilogue, b, split, each = epilogue_case(n, o, oh, seed, mode, bias)
    packed_images.conv2d_packed_channels(x, w, split, attrs, None, b, epilogue)
    packed_gemm.conv2d_packed_channels(x, w, each, attrs, None, b, epilogue)
    np.testing.assert_array_equal(split, each)
    want = apply_epilogue(conv2d_ref(x.astype(np.float64), w.astype(np.float64), **attrs), b,
                          side, mode)
    assert np.array_equal(np.isnan(split), np.isnan(want))
    finite = ~np.isnan(want)
    np.testing.assert_allclose(split[finite], want[finite], rtol=1e-4,
                               atol=1e-4 * max(1.0, np.abs(want[finite]).max()))


@settings(deadline=None, max_examples=20)
@given(**SHAPES)
def test_the_implicit_gemm_split_by_images_gives_each_images_bits(n, c, o, hw, kernel, seed):
    """The implicit GEMM over a batch the threads split (each filling its own phases)
    against the same kernel on one image at a time (the unsplit path): equal bits, its
    exact scratch."""
    from graphcnn.backends.cpu.kernels import implicit_gemm
    x, w, attrs, oh = case(n, c, o, hw, kernel, seed)
    whole = np.full((n, o, oh, oh), np.nan, np.float32)
    conv_gemm.release_workspaces()
    implicit_gemm.conv2d_implicit_gemm(x, w, whole, attrs)
    held = conv_gemm.held_workspace_bytes()
    scratch = implicit_gemm.implicit_scratch(w.shape, (oh, oh), attrs, n)
    assert held == conv_gemm.layout_bytes(conv_gemm.scratch_bytes(scratch))
    assert (scratch["implicit-phases"][0][0] > 1) == packed_images.splits_images(
        n, numba.get_num_threads())
    for i in range(n):
        one = np.full((1, o, oh, oh), np.nan, np.float32)
        implicit_gemm.conv2d_implicit_gemm(x[i:i + 1], w, one, attrs)
        np.testing.assert_array_equal(whole[i], one[0])
