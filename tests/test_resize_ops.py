"""resize2d / resize2d_grad (gc.interpolate, nn.Upsample): the reference against values
PyTorch's interpolate gives (written out once, by hand), the cpu kernels against the
reference on randomized sizes and attributes, gradients against finite differences, and
the argument rules and errors of torch.nn.functional.interpolate."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from op_check import check_op, forward

import graphcnn as gc
from graphcnn import nn
from graphcnn.errors import GraphBuildError
from graphcnn.ops.resize import axis_table, interpolation_matrix, resize_ref

X22 = np.float32([[[[1, 2], [3, 4]]]])


def test_2x2_to_4x4_as_pytorch():
    # torch.nn.functional.interpolate(x, size=(4, 4), mode="bilinear", align_corners=...)
    half_pixel = [[1.0, 1.25, 1.75, 2.0], [1.5, 1.75, 2.25, 2.5],
                  [2.5, 2.75, 3.25, 3.5], [3.0, 3.25, 3.75, 4.0]]
    corners = np.float32([[3, 4, 5, 6], [5, 6, 7, 8], [7, 8, 9, 10], [9, 10, 11, 12]]) / 3
    got = resize_ref(X22, (4, 4), "bilinear", False, None)
    np.testing.assert_allclose(got[0, 0], half_pixel, rtol=1e-6)
    got = resize_ref(X22, (4, 4), "bilinear", True, None)
    np.testing.assert_allclose(got[0, 0], corners, rtol=1e-6)
    np.testing.assert_array_equal(resize_ref(X22, (4, 4), "nearest", False, None)[0, 0],
                                  np.repeat(np.repeat(X22[0, 0], 2, 0), 2, 1))


def test_scale_factor_maps_with_one_over_scale_as_pytorch():
    x = np.arange(5, dtype=np.float32).reshape(1, 1, 1, 5)
    # interpolate(x, scale_factor=1.5, mode="bilinear") vs size=(1, 7): not the same
    by_scale = [0.0, 0.5, 7 / 6, 11 / 6, 2.5, 19 / 6, 23 / 6]
    by_size = [0.0, 4 / 7, 9 / 7, 2.0, 19 / 7, 24 / 7, 4.0]
    np.testing.assert_allclose(resize_ref(x, (1, 7), "bilinear", False, (1.5, 1.5))[0, 0, 0],
                               by_scale, rtol=1e-5)
    np.testing.assert_allclose(resize_ref(x, (1, 7), "bilinear", False, None)[0, 0, 0],
                               by_size, rtol=1e-5)
    # nearest: floor(dst * in / out); downsampling 5 -> 3 bilinear
    np.testing.assert_array_equal(resize_ref(x, (1, 7), "nearest", False, None)[0, 0, 0],
                                  [0, 0, 1, 2, 2, 3, 4])
    np.testing.assert_allclose(resize_ref(x, (1, 3), "bilinear", False, None)[0, 0, 0],
                               [1 / 3, 2.0, 11 / 3], rtol=1e-5)


def test_inf_times_a_zero_weight_is_nan_as_pytorch():
    # interpolate([[1, inf], [3, 4]], size=(2, 2)/(3, 3), mode="bilinear")
    x = np.float32([[[[1, np.inf], [3, 4]]]])
    same = resize_ref(x, (2, 2), "bilinear", False, None)[0, 0]
    assert same[0, 0] == 1 and np.isnan(same[0, 1]) and (same[1] == [3, 4]).all()
    up = resize_ref(x, (3, 3), "bilinear", False, None)[0, 0]
    assert np.isnan(up[:2, 0]).all() and np.isinf(up[:2, 1:]).all()
    np.testing.assert_allclose(up[2], [3, 3.5, 4])


def test_tables_are_interpolation_matrices_whose_rows_sum_to_one():
    for mode, corners in (("bilinear", False), ("bilinear", True), ("nearest", False)):
        for n_in, n_out in ((1, 3), (3, 1), (4, 7), (7, 4), (5, 5)):
            a = interpolation_matrix(axis_table(n_in, n_out, mode, corners, None), n_in)
            np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=1e-6)


def data(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@settings(max_examples=12, deadline=None)
@given(n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 5), w=st.integers(1, 5),
       oh=st.integers(1, 9), ow=st.integers(1, 9), kind=st.sampled_from(
           ["nearest", "bilinear", "corners"]), scaled=st.booleans(),
       seed=st.integers(0, 2**16))
def test_cpu_matches_the_reference_and_gradients_finite_differences(n, c, h, w, oh, ow, kind,
                                                                    scaled, seed):
    attrs = {"size": (oh, ow), "mode": "nearest" if kind == "nearest" else "bilinear",
             "align_corners": kind == "corners",
             "scales": (oh / h * 1.01, ow / w * 0.99) if scaled else None}
    check_op("resize2d", [data(seed, (n, c, h, w))], attrs)
    grad_attrs = dict(attrs, input_hw=(h, w))
    check_op("resize2d_grad", [data(seed + 1, (n, c, oh, ow))], grad_attrs)


def test_resize2d_grad_is_the_transpose():
    x, dy = data(0, (2, 3, 4, 5)), data(1, (2, 3, 7, 3))
    for attrs in ({"mode": "bilinear", "align_corners": False},
                  {"mode": "bilinear", "align_corners": True}, {"mode": "nearest"}):
        (y,) = forward("resize2d", [x], dict(attrs, size=(7, 3)), "cpu", "float64")
        (dx,) = forward("resize2d_grad", [dy], dict(attrs, size=(7, 3), input_hw=(4, 5)),
                        "cpu", "float64")
        assert np.sum(y * dy) == pytest.approx(np.sum(x * dx), rel=1e-12)


@pytest.mark.parametrize("kwargs, op, out_hw", [
    (dict(scale_factor=2), "upsample_nearest2d", (8, 10)),
    (dict(scale_factor=(3, 1)), "upsample_nearest2d", (12, 5)),
    (dict(size=(8, 15)), "upsample_nearest2d", (8, 15)),
    (dict(size=(6, 7)), "resize2d", (6, 7)),
    (dict(scale_factor=1.5), "resize2d", (6, 7)),
    (dict(scale_factor=2, mode="bilinear"), "resize2d", (8, 10)),
    (dict(size=3, mode="bilinear", align_corners=True), "resize2d", (3, 3)),
])
def test_upsample_layer_ops_shapes_and_values(kwargs, op, out_hw):
    x = gc.Input((2, 4, 5))
    y = nn.Upsample(**kwargs)(x)
    assert y.op == op and y.shape == (None, 2) + out_hw
    assert gc.interpolate(x, **kwargs).op == op
    X = data(3, (3, 2, 4, 5))
    model = gc.Model(inputs=x, outputs=y)
    want = gc.compile(model, batch_size=3, backend="reference")(X)
    got = gc.compile(model, batch_size=3, backend="cpu")(X)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    scales = None if "size" in kwargs else kwargs["scale_factor"]
    pair = scales if isinstance(scales, tuple) or scales is None else (scales, scales)
    mode = kwargs.get("mode", "nearest")
    np.testing.assert_allclose(want, resize_ref(X, out_hw, mode,
                                                kwargs.get("align_corners", False), pair),
                               rtol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(size=4, scale_factor=2), "only one of size or scale_factor"),
    (dict(), "either size or scale_factor"),
    (dict(scale_factor=2, align_corners=True), "align_corners can only be set"),
    (dict(scale_factor=2, mode="bicubic"), "mode must be one of"),
    (dict(scale_factor=0), "scale_factor must be greater than zero"),
    (dict(scale_factor=(2, 2, 2)), "a number or a pair"),
    (dict(size=(4, 0)), "size\\[1\\] must be greater than zero"),
    (dict(size=4, recompute_scale_factor=True), "not meaningful with an explicit size"),
    (dict(scale_factor=2, mode="bilinear", align_corners=1), "True or False"),
])
def test_argument_errors_as_pytorch(kwargs, message):
    with pytest.raises(GraphBuildError, match=message):
        nn.Upsample(**kwargs)
    with pytest.raises(GraphBuildError, match=message):
        gc.interpolate(gc.Input((1, 4, 4)), **kwargs)


def test_input_and_output_size_errors():
    with pytest.raises(GraphBuildError, match=r"\(N, C, H, W\)"):
        gc.upsample(gc.Input((4, 4)), scale_factor=2)
    with pytest.raises(GraphBuildError, match="greater than 0"):
        gc.interpolate(gc.Input((1, 4, 4)), scale_factor=0.2)


def test_recompute_scale_factor_maps_with_in_over_out():
    x = gc.Input((1, 1, 5))
    y = gc.interpolate(x, scale_factor=1.5, mode="bilinear", recompute_scale_factor=True)
    assert y.attrs["scales"] is None and y.shape == (None, 1, 1, 7)
