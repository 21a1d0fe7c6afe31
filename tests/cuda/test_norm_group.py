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


def test_six_axis_transpose_of_pixel_shuffle():
    check_cuda("transpose", [rand(2, 2, 2, 3, 2, 3)], {"perm": (0, 3, 4, 1, 5, 2)})
