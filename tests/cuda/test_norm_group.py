"""The group-norm kernels (instance norm is G = C) and the ops the composed layers add
(pow_scalar, 6-D transposes) on the cuda backend against the reference."""
import numpy as np
import pytest
from helpers import check_cuda, rand


@pytest.mark.parametrize("shape,groups", [((2, 6, 3, 2), 3), ((2, 4, 5), 4), ((3, 4), 1)])
def test_group_norm_and_its_gradient(shape, groups):
    channels = shape[1]
    weight = rand(channels, seed=1) + 1.0
    check_cuda("group_norm", [rand(*shape), weight, rand(channels, seed=2)],
               {"num_groups": groups, "eps": 1e-5})


def test_pow_scalar_and_its_gradient():
    x = np.abs(rand(3, 4, 5)) + 0.5
    check_cuda("pow_scalar", [x], {"exponent": -0.75})


@pytest.mark.parametrize("shape,pads,mode", [
    ((2, 3, 4, 5), ((0, 0), (0, 0), (3, 2), (1, 4)), "reflect"),
    ((2, 3, 4), ((0, 0), (2, 1), (3, 0)), "edge"),
    ((3, 4), ((1, 2), (4, 3)), "wrap")])
def test_mode_pad_and_its_gradient(shape, pads, mode):
    check_cuda("mode_pad", [rand(*shape)], {"pads": pads, "mode": mode})


def test_six_axis_transpose_of_pixel_shuffle():
    check_cuda("transpose", [rand(2, 2, 2, 3, 2, 3)], {"perm": (0, 3, 4, 1, 5, 2)})


def test_the_layers_compile_and_train_on_cuda():
    """A model of every new layer (LRN's power fused into the pool's epilogue, the
    pixel shuffles' 6-D transposes, the mode pads' slices and concats) and its training
    step on cuda, against the reference."""
    import graphcnn as gc
    from graphcnn import nn
    gc.manual_seed(2)
    x = gc.Input((2, 4, 4))
    h = nn.Conv2d(2, 4, 3)(nn.ReflectionPad2d(1)(x))
    h = nn.LocalResponseNorm(3, alpha=0.5, k=1.5)(nn.GroupNorm(2, 4)(h))
    h = nn.PixelUnshuffle(2)(nn.InstanceNorm2d(1, affine=True)(nn.PixelShuffle(2)(h)))
    y = nn.Conv2d(4, 1, 1)(nn.ReplicationPad2d((1, 0, 0, 1))(h))
    model = gc.Model(x, y)
    images = rand(2, 2, 4, 4)
    want = gc.compile(model, batch_size=2, backend="reference")(images)
    got = gc.compile(model, batch_size=2, backend="cuda")(images)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    target = rand(2, 1, 5, 5, seed=3)
    loss_want, grads_want = gc.value_and_grad(model, loss="mse", batch_size=2,
                                              backend="reference")(images, target)
    loss_got, grads_got = gc.value_and_grad(model, loss="mse", batch_size=2,
                                            backend="cuda")(images, target)
    assert loss_got == pytest.approx(loss_want, rel=1e-4)
    for name, g in grads_want.items():
        np.testing.assert_allclose(grads_got[name], g, rtol=1e-3, atol=1e-5, err_msg=name)
