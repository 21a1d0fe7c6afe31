"""pixel_cross_entropy and soft_dice on the cuda simulator against the reference, forward
and through their gradient ops (tiny shapes: the simulator runs each thread in Python)."""
import numpy as np
import pytest
from helpers import check_cuda, rand
from op_check import forward


def _labels(shape, classes, seed=0, ignore_index=-100):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, classes, shape).astype(np.int64)
    t[rng.random(shape) < 0.25] = ignore_index
    return t


@pytest.mark.parametrize("attrs", [{}, {"reduction": "sum", "weight": (0.5, 2.0, 1.0)},
                                   {"ignore_index": 1, "weight": (1.0, 0.0, 3.0)}])
def test_pixel_cross_entropy(attrs):
    labels = _labels((2, 3, 4), 3, ignore_index=attrs.get("ignore_index", -100))
    check_cuda("pixel_cross_entropy", [rand(2, 3, 3, 4) * 2, labels], attrs)


@pytest.mark.parametrize("attrs", [{}, {"include_background": False, "eps": 0.0}])
def test_soft_dice(attrs):
    check_cuda("soft_dice", [rand(2, 3, 3, 4) * 2, _labels((2, 3, 4), 3, seed=1)], attrs)


def test_all_ignored_and_bad_labels():
    x = rand(1, 3, 2, 2)
    (loss,) = forward("pixel_cross_entropy", [x, np.full((1, 2, 2), -100, np.int64)], {},
                      "cuda")
    assert np.isnan(loss)
    bad = np.int64([[[0, 1], [7, 2]]])   # no host check here: NaN, not a read out of bounds
    for op in ("pixel_cross_entropy", "soft_dice"):
        (loss,) = forward(op, [x, bad], {}, "cuda")
        assert np.isnan(loss), op
