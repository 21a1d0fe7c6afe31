"""transpose and upsample_nearest2d (the ops ONNX Transpose and Resize import to): cpu vs
reference, gradients vs finite differences, and their build errors."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from op_check import check_op, forward

from graphcnn.errors import GraphBuildError
from graphcnn.ir import Graph


def data(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=5).map(tuple),
       data_=st.data(), seed=st.integers(0, 2**16))
def test_transpose(shape, data_, seed):
    perm = tuple(data_.draw(st.permutations(range(len(shape)))))
    x = data(seed, shape)
    out = forward("transpose", [x], {"perm": perm}, "cpu")[0]
    np.testing.assert_array_equal(out, np.transpose(x, perm))
    check_op("transpose", [x], {"perm": perm})


def test_transpose_default_and_negative_perm():
    x = data(0, (2, 3, 4))
    np.testing.assert_array_equal(forward("transpose", [x], {}, "cpu")[0], x.T)
    np.testing.assert_array_equal(forward("transpose", [x], {"perm": (0, -1, 1)}, "cpu")[0],
                                  np.transpose(x, (0, 2, 1)))
    check_op("transpose", [data(1, (2, 3, 4, 5))], {"perm": (0, 2, 3, 1)})


def test_transpose_bad_perm():
    g = Graph()
    x = g.input("x", (2, 3, 4))
    for perm in [(0, 1), (0, 1, 1), (0, 1, 3)]:
        with pytest.raises(GraphBuildError, match="not a permutation"):
            g.add("transpose", [x], perm=perm)


@pytest.mark.parametrize("shape, scale", [((1, 1, 1, 1), (1, 1)), ((2, 3, 4, 5), (2, 2)),
                                          ((1, 2, 3, 2), (3, 1)), ((2, 1, 2, 3), (1, 4))])
def test_upsample_nearest2d(shape, scale):
    x = data(3, shape)
    out = forward("upsample_nearest2d", [x], {"scale": scale}, "cpu")[0]
    expected = x.repeat(scale[0], axis=2).repeat(scale[1], axis=3)
    np.testing.assert_array_equal(out, expected)
    check_op("upsample_nearest2d", [x], {"scale": scale})


def test_upsample_int_scale_and_errors():
    x = data(4, (1, 2, 3, 3))
    out = forward("upsample_nearest2d", [x], {"scale": 2}, "cpu")[0]
    assert out.shape == (1, 2, 6, 6)
    g = Graph()
    v = g.input("x", (1, 2, 3))
    with pytest.raises(GraphBuildError, match="4-D"):
        g.add("upsample_nearest2d", [v], scale=2)
    w = g.input("w", (1, 2, 3, 3))
    with pytest.raises(GraphBuildError, match="scale must be >= 1"):
        g.add("upsample_nearest2d", [w], scale=(0, 2))
