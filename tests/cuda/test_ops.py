"""Every cuda kernel against the reference backend on small shapes (the simulator runs
each thread in Python), forward and through the op's gradient graph."""
import os

import numpy as np
import pytest
from helpers import check_cuda, rand
from op_check import forward


@pytest.mark.parametrize("op,attrs", [("relu", {}), ("leaky_relu", {"alpha": 0.2}),
                                      ("sigmoid", {}), ("tanh", {}),
                                      ("clip", {"low": -0.5, "high": 0.7})])
def test_activations_and_their_grads(op, attrs):
    check_cuda(op, [rand(3, 5, 7)], attrs)


def test_relu_and_clip_propagate_nan_like_the_reference():
    x = np.float32([[np.nan, -np.inf, -2.0, -0.0, 0.5, np.inf]])
    for op, attrs in (("relu", {}), ("clip", {"low": -1.0, "high": 1.0})):
        (want,) = forward(op, [x], attrs, "reference")
        (got,) = forward(op, [x], attrs, "cuda")
        assert np.isnan(got[0, 0])
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_broadcast_binary(op):
    b = rand(5, 1) + (3.0 if op == "div" else 0.0)
    check_cuda(op, [rand(2, 5, 6), b])


def test_broadcast_over_many_axes_and_sum_to_broadcast_to():
    check_cuda("add", [rand(2, 1, 3, 1, 4), rand(3, 5, 1)])
    check_cuda("sum_to", [rand(2, 3, 4, 5)], {"shape": (3, 1, 1)})
    check_cuda("sum_to", [rand(70, 3)], {"shape": (3,)})          # block reduction
    check_cuda("sum_to", [rand(4, 3, 2)], {"shape": ()})
    check_cuda("broadcast_to", [rand(3, 1)], {"shape": (2, 3, 4)})


@pytest.mark.parametrize("attrs,shape_w,bias", [
    ({"stride": 2, "padding": 1}, (4, 3, 3, 3), True),
    ({"padding": (1, 0), "dilation": 2}, (5, 3, 2, 3), False),
    ({"groups": 3, "padding": 1}, (6, 1, 3, 3), True),            # grouped (GEMM per group)
    ({"groups": 3, "padding": 1, "stride": 2}, (3, 1, 3, 3), True),  # depthwise kernels
])
def test_conv2d_and_its_gradients(attrs, shape_w, bias):
    arrays = [rand(2, 3, 7, 6), rand(*shape_w)] + ([rand(shape_w[0])] if bias else [])
    check_cuda("conv2d", arrays, attrs)


@pytest.mark.parametrize("attrs", [{"padding": (0, 1)}, {"stride": 2, "padding": (1, 0),
                                                          "dilation": (1, 2)}])
def test_conv2d_gemms_over_several_tiles(attrs):
    """More output channels and pixels than one 64 x 64 tile, and K not a multiple of the
    K step, in all three GEMMs: each thread's rows and column are located once, before the
    K loop, and the K axis through the offset table (gemm.py)."""
    check_cuda("conv2d", [rand(1, 3, 9, 9), rand(66, 3, 1, 3), rand(66)], attrs)


def test_offset_tables_widen_to_int64_when_needed(monkeypatch):
    """A tensor past 2**31 elements needs int64 offsets: the table widens, and the GEMMs run
    on either width (forced to int64 here, on a small conv)."""
    from graphcnn.backends.cuda.kernels import gemm
    assert gemm.offset_table(np.array([[0, 2**31 - 1, 0, 0]])).dtype == np.int32
    assert gemm.offset_table(np.array([[0, 2**31, 0, 0]])).dtype == np.int64
    widen = gemm.offset_table
    monkeypatch.setattr(gemm, "offset_table",
                        lambda rows: widen(np.append(rows, [[0, 2**40, 0, 0]], axis=0)))
    check_cuda("conv2d", [rand(2, 3, 5, 4), rand(4, 3, 3, 3), rand(4)], {"padding": 1})


@pytest.mark.parametrize("channels", [16, 20])
def test_blocked_layout_ops(channels):
    """NCHW16c on the device: both conversions (with their gradients, each other),
    conv2d_blocked, 1x1 and depthwise, and max_pool2d_blocked, with a last block of 4
    channels or none."""
    blocks = -(-channels // 16)
    check_cuda("to_blocked", [rand(2, channels, 3, 4)])
    check_cuda("from_blocked", [rand(2, blocks, 3, 4, 16)], {"channels": channels})
    x = rand(2, blocks, 5, 4, 16)
    check_cuda("conv2d_blocked", [x, rand(24, channels, 1, 1), rand(24)], grad=False)
    check_cuda("conv2d_blocked", [x, rand(channels, 1, 3, 3)],
               {"groups": channels, "padding": 1, "stride": 2}, grad=False)
    check_cuda("expand_depthwise_blocked", [x, rand(24, channels, 1, 1), rand(24),
                                            rand(24, 1, 3, 3), rand(24)],
               {"groups": 24, "padding": 1, "low": 0.0, "high": 1.0}, grad=False)
    check_cuda("max_pool2d_blocked", [x], {"kernel_size": 3, "stride": 2, "padding": 1},
               grad=False)


def test_split_k_weight_gradient(monkeypatch):
    from graphcnn.backends.cuda.kernels import gemm
    monkeypatch.setattr(gemm, "SPLIT_K_MIN", 16)
    dy, x = rand(2, 4, 5, 5), rand(2, 3, 5, 5)
    attrs = {"padding": 1, "kernel_hw": (3, 3)}
    check_cuda("conv2d_weight_grad", [dy, x], attrs, grad=False)


@pytest.mark.parametrize("op,attrs", [
    ("max_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1}),
    ("max_pool2d", {"kernel_size": 2, "ceil_mode": True, "dilation": (1, 2)}),
    ("avg_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ("avg_pool2d", {"kernel_size": 2, "padding": 1, "count_include_pad": False}),
    ("global_avg_pool2d", {}),
])
def test_pooling_and_gradients(op, attrs):
    x = rand(2, 2, 7, 7)
    x[0, 0, :2, :2] = 1.0  # ties: the first maximum takes the gradient
    check_cuda(op, [x], attrs)


def test_linear_and_matmul():
    check_cuda("linear", [rand(5, 7), rand(3, 7), rand(3)])
    check_cuda("linear", [rand(5, 7), rand(3, 7)], grad=False)
    for ta in (False, True):
        for tb in (False, True):
            a = rand(6, 4) if ta else rand(4, 6)
            b = rand(5, 6) if tb else rand(6, 5)
            check_cuda("matmul", [a, b], {"trans_a": ta, "trans_b": tb}, grad=(ta == tb))


def test_batch_norm_inference_and_training():
    x = rand(3, 4, 3, 3) * 3 + 1
    params = [rand(4) + 1, rand(4), rand(4), np.abs(rand(4)) + 0.5]
    check_cuda("batch_norm", [x] + params, {"eps": 1e-3})
    check_cuda("batch_norm_train", [x, params[0], params[1]], {"eps": 1e-5})
    check_cuda("batch_norm_train", [rand(6, 3), rand(3), rand(3)], {}, grad=False)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [1, -1, 0])
def test_softmax_family(op, axis):
    check_cuda(op, [rand(3, 4, 5) * 3], {"axis": axis})


def test_losses():
    logits = rand(6, 5) * 2
    labels = np.array([0, 4, 2, 2, 1, 3], np.int64)
    check_cuda("cross_entropy", [logits, labels], {"reduction": "mean"})
    check_cuda("cross_entropy", [logits, labels], {"reduction": "sum"})
    check_cuda("mse", [rand(4, 6), rand(4, 6, seed=1)], {"reduction": "mean"})
    check_cuda("mse", [rand(40, 9), rand(40, 9, seed=1)], {"reduction": "sum"})


def test_shape_ops():
    x = rand(2, 3, 4)
    check_cuda("reshape", [x], {"shape": (0, -1)})
    check_cuda("flatten", [rand(2, 3, 2, 2)], {"start_dim": 1})
    check_cuda("concat", [x, rand(2, 2, 4), rand(2, 1, 4)], {"axis": 1})
    check_cuda("pad", [x], {"pads": ((0, 1), (2, 0), (1, 1)), "value": 0.5})
    check_cuda("slice", [x], {"starts": (1, 0, 1), "ends": (2, 3, 3)})
    check_cuda("transpose", [x], {"perm": (2, 0, 1)})
    check_cuda("upsample_nearest2d", [rand(1, 2, 3, 2)], {"scale": (2, 3)})


def test_dropout_mask_is_bit_identical():
    x = rand(4, 50)
    seed = np.asarray(123456789, np.int64)
    attrs = {"p": 0.3, "salt": 7}
    want = forward("dropout", [x, seed], attrs, "reference")[0]
    got = forward("dropout", [x, seed], attrs, "cuda")[0]
    np.testing.assert_array_equal(got, want)
    assert 0 < (got == 0).mean() < 0.6
    check_cuda("dropout", [x, seed], attrs)


def test_float64_graphs():
    check_cuda("conv2d", [rand(1, 2, 5, 5), rand(3, 2, 3, 3)], {"padding": 1}, grad=False,
               dtype="float64", rtol=1e-10, atol=1e-12)
    check_cuda("softmax", [rand(3, 4)], {"axis": 1}, grad=False, dtype="float64",
               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("op,attrs", [
    ("abs", {}), ("neg", {}), ("exp", {}), ("erf", {}), ("reciprocal", {}),
    ("elu", {"alpha": 0.7}), ("elu", {"alpha": 1.6732632423543772, "scale": 1.0507009873554805}),
    ("softplus", {"beta": 2.0, "threshold": 1.0}), ("softsign", {}), ("gelu", {}),
    ("gelu_tanh", {}), ("mish", {})])
def test_math_and_smooth_activations_and_their_grads(op, attrs):
    check_cuda(op, [rand(2, 3, 4) + (3.0 if op == "reciprocal" else 0.0)], attrs)


def test_log_sqrt_pow_maximum_minimum_and_special_values():
    positive = np.abs(rand(2, 3, 4)) + 0.5
    check_cuda("log", [positive])
    check_cuda("sqrt", [positive])
    check_cuda("pow", [positive, rand(3, 1)])
    check_cuda("maximum", [rand(2, 3, 4), rand(3, 1)])
    check_cuda("minimum", [rand(3, 1), rand(2, 3, 4)])
    x = np.float32([[np.nan, -np.inf, -2.0, -0.0, 0.0, 0.5, np.inf]])
    # the simulator runs Python's math, which raises on log and sqrt of a negative number
    # (the device gives NaN, as the reference): those two on a real GPU only
    domain_errors = ("log", "sqrt") if os.environ.get("GRAPHCNN_CUDA_REAL") == "1" else ()
    for op in ("exp", "softplus", "mish", "gelu", "elu") + domain_errors:
        (want,) = forward(op, [x], {}, "reference")
        (got,) = forward(op, [x], {}, "cuda")
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0, equal_nan=True, err_msg=op)
    (got,) = forward("maximum", [x, x[:, ::-1].copy()], {}, "cuda")
    assert np.isnan(got[0, 0]) and np.isnan(got[0, -1])
