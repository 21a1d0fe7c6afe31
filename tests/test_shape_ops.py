"""Data-movement ops (reshape, flatten, concat, pad, slice): cpu vs reference, gradients
vs finite differences, and the build errors a user sees for bad shapes or attributes."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from op_check import check_op, forward

from graphcnn.errors import GraphBuildError
from graphcnn.ir import Graph

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=5).map(tuple)


def data(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@st.composite
def reshape_case(draw):
    shape = draw(shapes)
    size = int(np.prod(shape))
    # a target: factor the size into up to 3 parts, then maybe mark one -1 and copy dims
    parts = []
    rest = size
    for _ in range(draw(st.integers(0, 2))):
        divisors = [d for d in range(1, rest + 1) if rest % d == 0]
        d = draw(st.sampled_from(divisors))
        parts.append(d)
        rest //= d
    target = parts + [rest]
    draw(st.randoms()).shuffle(target)
    spec = list(target)
    if draw(st.booleans()):
        spec[draw(st.integers(0, len(spec) - 1))] = -1
    for i in range(len(spec)):
        if spec[i] != -1 and i < len(shape) and shape[i] == target[i] and draw(st.booleans()):
            spec[i] = 0
    return shape, tuple(spec), tuple(target)


@given(case=reshape_case(), seed=st.integers(0, 2**16))
def test_reshape(case, seed):
    shape, spec, target = case
    x = data(seed, shape)
    out = forward("reshape", [x], {"shape": spec}, "cpu")[0]
    np.testing.assert_array_equal(out, x.reshape(target))
    check_op("reshape", [x], {"shape": spec})


@given(shape=shapes, data_=st.data(), seed=st.integers(0, 2**16))
def test_flatten(shape, data_, seed):
    start = data_.draw(st.integers(-len(shape), len(shape) - 1))
    x = data(seed, shape)
    out = forward("flatten", [x], {"start_dim": start}, "cpu")[0]
    s = start % len(shape)
    np.testing.assert_array_equal(out, x.reshape(shape[:s] + (-1,)))
    check_op("flatten", [x], {"start_dim": start})


@given(shape=shapes, data_=st.data(), seed=st.integers(0, 2**16))
def test_concat(shape, data_, seed):
    axis = data_.draw(st.integers(-len(shape), len(shape) - 1))
    count = data_.draw(st.integers(1, 3))
    arrays = []
    for k in range(count):
        s = list(shape)
        s[axis] = data_.draw(st.integers(1, 3))
        arrays.append(data(seed + k, tuple(s)))
    out = forward("concat", arrays, {"axis": axis}, "cpu")[0]
    np.testing.assert_array_equal(out, np.concatenate(arrays, axis=axis))
    check_op("concat", arrays, {"axis": axis})


@given(shape=shapes, data_=st.data(), seed=st.integers(0, 2**16))
def test_pad(shape, data_, seed):
    pads = tuple((data_.draw(st.integers(0, 2)), data_.draw(st.integers(0, 2))) for _ in shape)
    value = data_.draw(st.sampled_from([0.0, -1.5]))
    x = data(seed, shape)
    out = forward("pad", [x], {"pads": pads, "value": value}, "cpu")[0]
    np.testing.assert_array_equal(out, np.pad(x, pads, constant_values=value))
    check_op("pad", [x], {"pads": pads, "value": value})


@given(shape=shapes, data_=st.data(), seed=st.integers(0, 2**16))
def test_slice(shape, data_, seed):
    starts, ends = [], []
    for d in shape:
        s = data_.draw(st.integers(0, d - 1))
        starts.append(s)
        ends.append(data_.draw(st.integers(s + 1, d)))
    x = data(seed, shape)
    attrs = {"starts": tuple(starts), "ends": tuple(ends)}
    out = forward("slice", [x], attrs, "cpu")[0]
    np.testing.assert_array_equal(out, x[tuple(slice(s, e) for s, e in zip(starts, ends))])
    check_op("slice", [x], attrs)


def test_int64_data_moves_unchanged():
    x = np.arange(24, dtype=np.int64).reshape(2, 3, 4)
    assert forward("concat", [x, x], {"axis": 2}, "cpu")[0].tolist() == \
        np.concatenate([x, x], 2).tolist()
    assert forward("pad", [x], {"pads": ((0, 0), (1, 0), (0, 2)), "value": 7}, "cpu")[0].tolist() \
        == np.pad(x, ((0, 0), (1, 0), (0, 2)), constant_values=7).tolist()


def test_rank_above_four_falls_back_correctly():
    x = data(3, (2, 1, 3, 2, 2, 3))
    pads = ((1, 0), (0, 1), (0, 0), (2, 1), (0, 0), (1, 1))
    check_op("pad", [x], {"pads": pads, "value": 0.5})


def test_attrs_are_idempotent_and_axes_normalized():
    g = Graph()
    x = g.input("x", (2, 3, 4))
    c = g.add("concat", [x, x], axis=-1)
    assert c.shape == (2, 3, 8) and c.node.attrs["axis"] == 2
    again = g.add("concat", [x, x], **c.node.attrs)
    assert again.node.attrs == c.node.attrs
    f = g.add("flatten", [x], start_dim=-2)
    assert f.shape == (2, 12) and f.node.attrs["start_dim"] == 1
    r = g.add("reshape", [x], shape=(0, -1))
    assert r.shape == (2, 12) and r.node.attrs["shape"] == (0, -1)  # stays symbolic
    p = g.add("pad", [x], pads=[[0, 0], [1, 1], [2, 0]])
    assert g.add("pad", [x], **p.node.attrs).node.attrs == p.node.attrs
    assert p.shape == (2, 5, 6)


def test_build_errors():
    g = Graph()
    x = g.input("x", (2, 3, 4))
    y = g.input("y", (2, 5, 5))
    with pytest.raises(GraphBuildError, match=r"concatenate shapes \(2, 3, 4\), \(2, 5, 5\)"):
        g.add("concat", [x, y], axis=1)
    with pytest.raises(GraphBuildError, match="same dtype"):
        g.add("concat", [x, g.input("i", (2, 3, 4), "int64")])
    with pytest.raises(GraphBuildError, match="axis 3 is out of range"):
        g.add("concat", [x, x], axis=3)
    with pytest.raises(GraphBuildError, match=r"cannot reshape \(2, 3, 4\) \(24 elements\) "
                                              r"to \(5, 5\)"):
        g.add("reshape", [x], shape=(5, 5))
    with pytest.raises(GraphBuildError, match="-1 dimension cannot be inferred"):
        g.add("reshape", [x], shape=(5, -1))
    with pytest.raises(GraphBuildError, match="at most one"):
        g.add("reshape", [x], shape=(-1, -1))
    with pytest.raises(GraphBuildError, match="non-negative"):
        g.add("pad", [x], pads=((0, 0), (-1, 0), (0, 0)))
    with pytest.raises(GraphBuildError, match="one pair per axis"):
        g.add("pad", [x], pads=((1, 1), (1, 1)))
    with pytest.raises(GraphBuildError, match=r"pads must be \(\(before, after\)"):
        g.add("pad", [x], pads=(1, 1, 1))
    with pytest.raises(GraphBuildError, match="out of range"):
        g.add("slice", [x], starts=(0, 2, 0), ends=(2, 4, 4))
    with pytest.raises(GraphBuildError, match="start_dim 3 is out of range"):
        g.add("flatten", [x], start_dim=3)


@pytest.mark.parametrize("batch", [1, 3])
def test_concat_copies_rows_in_pieces_as_the_reference(batch):
    """The concat kernel copies each input's rows (one per batch index) into their places,
    cut into pieces when the rows are fewer than the threads; NaN and Inf copied as they
    are, empty inputs skipped."""
    from graphcnn.backends.cpu.kernels import shape

    rng = np.random.default_rng(batch)
    ins = [rng.standard_normal((batch, c, 30, 40)).astype(np.float32) for c in (5, 0, 7, 1)]
    ins[2][0, 3, 4, 5], ins[0][-1, 0, 0, 0] = np.nan, -np.inf
    out = np.full((batch, 13, 30, 40), 7.0, np.float32)
    shape.concat_kernel(ins, [out], {"axis": 1})
    np.testing.assert_array_equal(out, np.concatenate(ins, axis=1))
