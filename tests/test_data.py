"""gc.data: the digits dataset and the bilinear resize under it."""
import numpy as np
import pytest

import graphcnn as gc
from graphcnn.data.digits import bilinear_matrix, resize_bilinear

pytest.importorskip("sklearn")


@pytest.fixture(scope="module")
def digits():
    return gc.data.load_digits()


def test_shapes_dtypes_and_range(digits):
    (X, y), (Xt, yt) = digits
    assert X.shape == (1437, 1, 32, 32) and Xt.shape == (360, 1, 32, 32)
    assert X.dtype == np.float32 and y.dtype == np.int64 and yt.dtype == np.int64
    assert X.flags.c_contiguous
    assert 0.0 <= X.min() and X.max() <= 1.0 and X.max() > 0.9
    assert set(np.unique(y)) == set(range(10))


def test_split_is_stratified_and_fixed(digits):
    (X, y), (Xt, yt) = digits
    counts_train, counts_test = np.bincount(y), np.bincount(yt)
    # every class is split 80/20 up to rounding
    np.testing.assert_allclose(counts_test / (counts_train + counts_test), 0.2, atol=0.01)
    (X2, y2), (Xt2, yt2) = gc.data.load_digits()
    assert np.array_equal(X, X2) and np.array_equal(yt, yt2)


def test_size_8_keeps_the_original_pixels():
    from sklearn.datasets import load_digits
    (X, y), (Xt, yt) = gc.data.load_digits(size=8)
    original = load_digits()
    assert X.shape[1:] == (1, 8, 8)
    all_images = np.concatenate([X, Xt])[:, 0].reshape(-1, 64)
    expected = original.data / 16.0
    # same multiset of images: sort rows lexicographically and compare
    key = lambda a: a[np.lexsort(a.T[::-1])]
    np.testing.assert_allclose(key(all_images), key(expected), atol=1e-6)


def test_other_sizes():
    (X, _), _ = gc.data.load_digits(size=16)
    assert X.shape[1:] == (1, 16, 16)
    with pytest.raises(ValueError):
        gc.data.load_digits(size=0)


def test_bilinear_matrix_rows_sum_to_one_and_match_half_pixel_formula():
    a = bilinear_matrix(2, 4)
    np.testing.assert_allclose(a.sum(axis=1), 1.0)
    # half-pixel centers: output i samples source (i + 0.5) / 2 - 0.5, clamped to [0, 1]
    np.testing.assert_allclose(a, [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])


def test_resize_constant_and_linear_ramp():
    const = np.full((3, 8, 8), 0.7)
    np.testing.assert_allclose(resize_bilinear(const, 32), 0.7)
    ramp = np.tile(np.arange(4.0), (1, 4, 1))          # (1, 4, 4): value = column
    out = resize_bilinear(ramp, 8)
    # each output row is the same non-decreasing ramp from 0 to 3
    assert np.all(np.diff(out[0], axis=1) >= 0)
    np.testing.assert_allclose(out[0, :, 0], 0.0)
    np.testing.assert_allclose(out[0, :, -1], 3.0)
