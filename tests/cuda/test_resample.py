"""The cuda kernels of resize2d (nearest, bilinear with align_corners False and True, and
their adjoint), channel_dropout (nn.Dropout2d) and nn.ConvTranspose2d (conv2d_input_grad
plus a bias) against the reference backend, on the simulator's tiny shapes."""
import itertools

import numpy as np
import pytest
from helpers import check_cuda, rand
from op_check import forward

import graphcnn as gc
from graphcnn import nn


@pytest.mark.parametrize("attrs", [
    {"size": (5, 3), "mode": "nearest"},
    {"size": (6, 7), "mode": "bilinear"},
    {"size": (5, 2), "mode": "bilinear", "align_corners": True},
    {"size": (4, 6), "mode": "bilinear", "scales": (1.5, 2.0)},
])
def test_resize2d_and_its_adjoint(attrs):
    check_cuda("resize2d", [rand(2, 2, 3, 4)], attrs)
    check_cuda("resize2d_grad", [rand(1, 2, *attrs["size"])], dict(attrs, input_hw=(3, 4)))


def test_channel_dropout_mask_is_bit_identical():
    x = rand(3, 8, 2, 3)
    seed = np.asarray(987654321, np.int64)
    attrs = {"p": 0.5, "salt": 4}
    want = forward("channel_dropout", [x, seed], attrs, "reference")[0]
    got = forward("channel_dropout", [x, seed], attrs, "cuda")[0]
    np.testing.assert_array_equal(got, want)
    dropped = (want.reshape(24, 6) == 0).all(axis=1)
    assert 0 < dropped.mean() < 1
    check_cuda("channel_dropout", [x, seed], attrs)


@pytest.mark.parametrize("cin, cout, k, stride, padding, output_padding, groups, hw, grad", [
    (4, 2, 2, 2, 0, 0, 1, (3, 3), False),     # U-Net's up-convolution
    (3, 2, 4, 2, 1, 0, 1, (2, 3), True),      # DCGAN's generator block
    (2, 4, 3, 2, 1, 1, 2, (2, 2), False),     # output_padding and groups
])
def test_conv_transpose2d_layer(cin, cout, k, stride, padding, output_padding, groups, hw,
                                grad):
    """Forward against the reference; gradients on one case (the simulator is slow, and
    the input-gradient and weight-gradient kernels are the conv ops' own, tested there)."""
    x = gc.Input((cin,) + hw)
    layer = nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=padding,
                               output_padding=output_padding, groups=groups)
    model = gc.Model(inputs=x, outputs=gc.tanh(layer(x)))
    X = rand(2, cin, *hw)
    want = gc.compile(model, batch_size=2, backend="reference")(X)
    got = gc.compile(model, batch_size=2, backend="cuda")(X)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    if not grad:
        return
    target = rand(2, cout, *layer.output_size(hw), seed=1)
    _, grads_ref = gc.value_and_grad(model, loss="mse", batch_size=2,
                                     backend="reference")(X, target)
    _, grads = gc.value_and_grad(model, loss="mse", batch_size=2, backend="cuda")(X, target)
    for name in grads_ref:
        np.testing.assert_allclose(grads[name], grads_ref[name], rtol=1e-4, atol=1e-5,
                                   err_msg=name)


def test_upsample_split_mean_dropout2d_model_trains_as_the_reference():
    x = gc.Input((2, 3, 3))
    h = nn.Conv2d(2, 4, 1)(x)
    h = nn.Dropout2d(0.5)(h)
    a, b = gc.split(h, [1, 3])
    u = nn.Upsample(scale_factor=1.5, mode="bilinear")(a)
    v = nn.Upsample(size=(5, 4))(b)
    y = gc.concat([gc.mean(u, axis=(2, 3)), gc.sum(v, axis=(1, 3))], axis=1)
    model = gc.Model(inputs=x, outputs=y)
    X, target = rand(2, 2, 3, 3), rand(2, 6, seed=2)
    ref = gc.value_and_grad(model, loss="mse", batch_size=2, backend="reference")
    step = gc.value_and_grad(model, loss="mse", batch_size=2, backend="cuda")
    ref.executable._seeds = itertools.count(3)   # the same channel masks
    step.executable._seeds = itertools.count(3)
    loss_ref, grads_ref = ref(X, target)
    loss, grads = step(X, target)
    assert abs(loss - loss_ref) <= 1e-5 * max(1.0, abs(loss_ref))
    for name in grads_ref:
        np.testing.assert_allclose(grads[name], grads_ref[name], rtol=1e-4, atol=1e-5,
                                   err_msg=name)
